package registrar

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/sbctest"
	"github.com/psigate/psigate/sbc/signal"
)

// TestRegisterThroughSBCToKamailio: a client registers through the SBC
// with digest authentication at a real registrar; the SBC never knows the
// password, Kamailio's location table holds the SBC's token contact, and
// nothing of the client's address reaches Kamailio.
func TestRegisterThroughSBCToKamailio(t *testing.T) {
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: map[string]string{"1001": "s3cret-1001"}})
	relay, sbcAddr := startSBC(t, k.Addr.String(), Limits{MaxExpiry: 2678400 * time.Second, MinInterval: 60 * time.Second})
	ph := newPhone(t, sbcAddr)

	req := ph.newRegister("300")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := ph.client.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 401 {
		t.Fatalf("first REGISTER: %d, want Kamailio's challenge", res.StatusCode)
	}
	res, err = ph.client.DoDigestAuth(ctx, req, res, sipgoAuth("1001", "s3cret-1001"))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("authenticated REGISTER: %d %s", res.StatusCode, res.Reason)
	}

	locs := k.Locations(t)
	if len(locs) != 1 {
		t.Fatalf("Kamailio holds %d locations, want 1: %+v", len(locs), locs)
	}
	bs := relay.Bindings.List()
	if len(bs) != 1 {
		t.Fatalf("%d bindings in the SBC", len(bs))
	}
	core := relay.Realms.Realm("core")
	want := "sip:" + bs[0].Token + "@127.0.0.1:" + itoa(core.Port(signal.TCP))
	if !strings.HasPrefix(locs[0].Contact, want) || locs[0].UserAgent != "ZoomPbxPhone 6.0" {
		t.Errorf("Kamailio's location %+v, want contact %s and the client's User-Agent", locs[0], want)
	}
	if left := time.Until(locs[0].Expires); left < 250*time.Second || left > 301*time.Second {
		t.Errorf("Kamailio's expiry in %s, want about 300 s", left)
	}
	for _, r := range k.Requests(t) {
		for _, leak := range []string{"192.168.1.23", ph.callID, sbcAddr} {
			if strings.Contains(r.Raw, leak) {
				t.Errorf("Kamailio got %q from the access side in %s", leak, r)
			}
		}
	}

	// Wrong password: Kamailio's refusal reaches the client, no binding.
	other := newPhone(t, sbcAddr)
	other.callID = "other@192.168.1.24"
	req = other.newRegister("300")
	req.ReplaceHeader(sip.NewHeader("Contact", "<sip:1001@192.168.1.24:5062>"))
	res, _ = other.client.Do(ctx, req)
	res, err = other.client.DoDigestAuth(ctx, req, res, sipgoAuth("1001", "wrong"))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 403 && res.StatusCode != 401 {
		t.Fatalf("wrong password: %d", res.StatusCode)
	}
	if n := len(relay.Bindings.List()); n != 1 {
		t.Fatalf("%d bindings after a refused registration", n)
	}
}
