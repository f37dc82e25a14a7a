package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/sbc/b2bua"
	"github.com/psigate/psigate/webui"
)

// TestCallLogKeepsQueuedRecordsAtStop: records handed over just before
// stop (as the SBC's last calls end) are in the store once stop returns,
// and the portal's history and counts show them.
func TestCallLogKeepsQueuedRecordsAtStop(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, stop, err := startCallLog(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rec.Add(b2bua.Record{From: "sip:1001@pbx.example.com", To: "sip:2002@pbx.example.com", CallID: "a", Result: b2bua.Answered,
		Code: 200, Reason: b2bua.ReasonShutdown, Started: now.Add(-time.Minute), Answered: now.Add(-50 * time.Second), Ended: now,
		Codecs: [2]string{"G722", "PCMA"}, SRTP: [2]bool{true, false}, PacketsIn: [2]uint64{10, 11}, PacketsOut: [2]uint64{12, 13}, Lost: [2]int64{1, 2}})
	rec.Add(b2bua.Record{From: "sip:3003@pbx.example.com", To: "sip:1001@pbx.example.com", ToClient: true, CallID: "b",
		Result: b2bua.Cancelled, Code: 487, Reason: "caller cancelled", Started: now, Ended: now})
	stop()

	p, err := callHistory{st}.EndedCalls(10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Calls) != 2 || p.Next != 0 || p.Unreadable != 0 || p.Kept != 2 {
		t.Fatalf("history after stop: %+v", p)
	}
	want := webui.EndedCall{ID: 1, From: "sip:1001@pbx.example.com", To: "sip:2002@pbx.example.com", Direction: "client to PBX",
		CallID: "a", Started: now.Add(-time.Minute), Answered: now.Add(-50 * time.Second), Ended: now, DurationS: 50,
		Result: "answered", Code: 200, Reason: b2bua.ReasonShutdown,
		Codecs: [2]string{"G722", "PCMA"}, SRTP: [2]bool{true, false}, PacketsIn: [2]uint64{10, 11}, PacketsOut: [2]uint64{12, 13}, Lost: [2]int64{1, 2}}
	got := p.Calls[1]
	if !got.Started.Equal(want.Started) || !got.Answered.Equal(want.Answered) || !got.Ended.Equal(want.Ended) {
		t.Errorf("times %v %v %v, want %v %v %v", got.Started, got.Answered, got.Ended, want.Started, want.Answered, want.Ended)
	}
	got.Started, got.Answered, got.Ended = want.Started, want.Answered, want.Ended
	if got != want {
		t.Errorf("oldest call\n got %+v\nwant %+v", got, want)
	}
	if c := p.Calls[0]; c.ID != 2 || c.Direction != "PBX to client" || c.Result != "cancelled" || c.DurationS != 0 {
		t.Errorf("newest call %+v", c)
	}
	counts, lost := callCounts(rec.Stats())
	if counts != (webui.CallCounts{Answered: 1, Cancelled: 1}) || lost != 0 {
		t.Errorf("counts %+v lost %d", counts, lost)
	}
}
