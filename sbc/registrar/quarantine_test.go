package registrar

import (
	"testing"
	"time"
)

func TestQuarantine(t *testing.T) {
	q := &Quarantine{Enabled: true, Duration: time.Minute}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// A client: REGISTER and retry every 60 s, forever admitted.
	for i := range 20 {
		at := now.Add(time.Duration(i) * time.Minute)
		for range 2 {
			if ok, _ := q.Admit("UDP 198.51.100.4:5060", at); !ok {
				t.Fatalf("a normal client was refused at refresh %d", i)
			}
		}
	}
	// A violator: 11 REGISTERs in a second.
	var newly int
	for i := range 11 {
		ok, n := q.Admit("UDP 203.0.113.66:5060", now.Add(time.Duration(i)*100*time.Millisecond))
		if n {
			newly++
		}
		if i < 10 && !ok {
			t.Fatalf("refused after %d", i+1)
		}
		if i == 10 && ok {
			t.Fatal("the eleventh REGISTER in a second was admitted")
		}
	}
	if newly != 1 || q.Blocked(now.Add(2*time.Second)) != 1 {
		t.Fatalf("newly %d, blocked %d", newly, q.Blocked(now.Add(2*time.Second)))
	}
	if ok, _ := q.Admit("UDP 203.0.113.66:5060", now.Add(30*time.Second)); ok {
		t.Fatal("admitted during quarantine")
	}
	if ok, _ := q.Admit("UDP 203.0.113.66:5060", now.Add(62*time.Second)); !ok {
		t.Fatal("still refused after the quarantine")
	}
	off := &Quarantine{}
	for range 100 {
		if ok, _ := off.Admit("x", now); !ok {
			t.Fatal("quarantine off refused")
		}
	}
}
