package registrar

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestBindingsIndexMatchesTable drives the table with random operations
// and checks the AOR index against a plain scan after each.
func TestBindingsIndexMatchesTable(t *testing.T) {
	b := NewBindings()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		token := "t" + strconv.Itoa(rng.IntN(50))
		aor := "sip:" + strconv.Itoa(rng.IntN(8)) + "@pbx"
		switch rng.IntN(4) {
		case 0, 1:
			b.Put(Binding{Token: token, AOR: aor, Contact: "sip:c" + token, Expires: now.Add(time.Duration(rng.IntN(100)) * time.Second), Pending: rng.IntN(5) == 0, Since: now})
		case 2:
			b.Delete(token)
		case 3:
			now = now.Add(5 * time.Second)
			b.Expire(now)
		}
		for a := range 8 {
			aor := "sip:" + strconv.Itoa(a) + "@pbx"
			var want []string
			for _, x := range b.byToken {
				if x.AOR == aor && !x.Pending {
					want = append(want, x.Token)
				}
			}
			var got []string
			for _, x := range b.OfAOR(aor) {
				got = append(got, x.Token)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: OfAOR(%s) = %v, want %v", i, aor, got, want)
			}
		}
		if n := indexed(b); n != len(b.byToken) {
			t.Fatalf("step %d: index holds %d tokens, table %d", i, n, len(b.byToken))
		}
	}
}

func indexed(b *Bindings) int {
	n := 0
	for _, set := range b.byAOR {
		n += len(set)
	}
	return n
}
