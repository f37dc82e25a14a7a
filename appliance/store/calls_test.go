package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/b2bua"
	bolt "go.etcd.io/bbolt"
)

// callRecord is a record whose To names it ("call-N").
func callRecord(n int) b2bua.Record {
	t := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Minute)
	return b2bua.Record{
		From: "sip:1001@pbx.example.com", To: fmt.Sprintf("call-%d", n), CallID: fmt.Sprintf("id-%d", n),
		Started: t, Answered: t.Add(2 * time.Second), Ended: t.Add(30 * time.Second),
		Result: b2bua.Answered, Code: 200, Reason: b2bua.ReasonCallerBye,
		Codecs: [2]string{"G722", "PCMA"}, SRTP: [2]bool{true, false}, PacketsIn: [2]uint64{1400, 1398},
	}
}

func addCalls(t *testing.T, s *Store, from, to int) {
	t.Helper()
	var batch []b2bua.Record
	for n := from; n <= to; n++ {
		batch = append(batch, callRecord(n))
	}
	if err := s.AddCallRecords(batch); err != nil {
		t.Fatal(err)
	}
}

// names are the pages' records' To, newest first.
func names(p CallPage) []string {
	out := make([]string, len(p.Records))
	for i, r := range p.Records {
		out[i] = r.To
	}
	return out
}

func wantNames(t *testing.T, what string, p CallPage, want ...string) {
	t.Helper()
	if got := names(p); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

func TestCallRecordsAppendAndRead(t *testing.T) {
	s := open(t, Options{})
	p, err := s.CallRecords(10, 0)
	if err != nil || len(p.Records) != 0 || p.Next != 0 {
		t.Fatalf("empty store: %+v %v", p, err)
	}
	addCalls(t, s, 1, 2)
	addCalls(t, s, 3, 3)
	if err := s.AddCallRecords(nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	p, err = s.CallRecords(10, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantNames(t, "all", p, "call-3", "call-2", "call-1")
	if p.Next != 0 || p.Skipped != 0 {
		t.Errorf("next %d skipped %d, want 0 0", p.Next, p.Skipped)
	}
	got, want := p.Records[2], callRecord(1)
	if got.Seq != 1 || got.CallID != want.CallID || !got.Answered.Equal(want.Answered) || got.Codecs != want.Codecs ||
		got.SRTP != want.SRTP || got.PacketsIn != want.PacketsIn || got.Duration() != 28*time.Second {
		t.Errorf("record 1 read back as %+v, want %+v", got, want)
	}
	if n, err := s.CallRecordCount(); err != nil || n != 3 {
		t.Errorf("count %d %v, want 3", n, err)
	}
}

func TestCallRecordsTrimKeepsNewest(t *testing.T) {
	s := open(t, Options{MaxCallRecords: 5})
	addCalls(t, s, 1, 4)
	addCalls(t, s, 5, 7) // two beyond the bound
	p, _ := s.CallRecords(100, 0)
	wantNames(t, "after trim", p, "call-7", "call-6", "call-5", "call-4", "call-3")
	addCalls(t, s, 8, 20) // one batch larger than the bound
	p, _ = s.CallRecords(100, 0)
	wantNames(t, "after a large batch", p, "call-20", "call-19", "call-18", "call-17", "call-16")
	if n, _ := s.CallRecordCount(); n != 5 {
		t.Errorf("count %d, want 5", n)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("file check after trimming: %v", err)
	}
}

func TestCallRecordsPaging(t *testing.T) {
	s := open(t, Options{MaxCallRecords: 8})
	addCalls(t, s, 1, 10) // keeps 3..10
	p, err := s.CallRecords(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantNames(t, "page 1", p, "call-10", "call-9", "call-8")
	if p.Next != 8 {
		t.Fatalf("next %d, want 8", p.Next)
	}
	p, _ = s.CallRecords(3, p.Next)
	wantNames(t, "page 2", p, "call-7", "call-6", "call-5")
	p, _ = s.CallRecords(3, p.Next)
	wantNames(t, "page 3", p, "call-4", "call-3")
	if p.Next != 0 {
		t.Fatalf("last page: next %d, want 0", p.Next)
	}
	// An exact fit ends without a next cursor.
	p, _ = s.CallRecords(8, 0)
	if len(p.Records) != 8 || p.Next != 0 {
		t.Fatalf("exact fit: %d records next %d, want 8 and 0", len(p.Records), p.Next)
	}
	for _, c := range []struct {
		before uint64
		want   []string
	}{
		{1 << 40, []string{"call-10", "call-9"}}, // beyond the newest: from the newest
		{3, nil},                                 // the oldest kept: nothing older
		{2, nil},                                 // already trimmed
	} {
		p, err := s.CallRecords(2, c.before)
		if err != nil {
			t.Fatal(err)
		}
		wantNames(t, fmt.Sprintf("before %d", c.before), p, c.want...)
	}
	if p, _ := s.CallRecords(0, 0); len(p.Records) != 0 {
		t.Errorf("limit 0: %d records", len(p.Records))
	}
}

func TestCallRecordsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxCallRecords: 4})
	if err != nil {
		t.Fatal(err)
	}
	addCalls(t, s, 1, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{MaxCallRecords: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, _ := s.CallRecords(10, 0)
	wantNames(t, "after reopen", p, "call-3", "call-2", "call-1")
	// Numbering goes on where it stopped, and so does the bound.
	addCalls(t, s, 4, 5)
	p, _ = s.CallRecords(10, 0)
	wantNames(t, "added after reopen", p, "call-5", "call-4", "call-3", "call-2")
	if p.Records[0].Seq != 5 {
		t.Errorf("newest seq %d, want 5", p.Records[0].Seq)
	}
}

func TestCallRecordsSkipMalformed(t *testing.T) {
	s := open(t, Options{})
	addCalls(t, s, 1, 2)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCalls)
		for _, bad := range []string{"{not json", `{"started": "yesterday"}`} {
			n, _ := b.NextSequence()
			if err := b.Put(u64(n), []byte(bad)); err != nil {
				return err
			}
		}
		return b.Put([]byte("odd key"), []byte(`{}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	addCalls(t, s, 5, 5)
	p, err := s.CallRecords(10, 0)
	if err != nil {
		t.Fatalf("listing with malformed values: %v", err)
	}
	wantNames(t, "readable ones", p, "call-5", "call-2", "call-1")
	if p.Skipped != 3 {
		t.Errorf("skipped %d, want 3", p.Skipped)
	}
	// A page boundary next to a bad value still pages on.
	p, _ = s.CallRecords(1, 0)
	wantNames(t, "page 1", p, "call-5")
	if p.Skipped != 1 {
		t.Errorf("page 1 skipped %d, want 1 (the odd key sorts last)", p.Skipped)
	}
	p, _ = s.CallRecords(1, p.Next)
	wantNames(t, "page 2", p, "call-2")
	if p.Skipped != 2 {
		t.Errorf("page 2 skipped %d, want 2 (the two bad values between)", p.Skipped)
	}
}

func TestCallRecordsConcurrent(t *testing.T) {
	s := open(t, Options{MaxCallRecords: 50, NoSync: true})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				if err := s.AddCallRecords([]b2bua.Record{callRecord(w*100 + i), callRecord(w*100 + i + 50)}); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				p, err := s.CallRecords(10, 0)
				if err != nil {
					errs <- err
					return
				}
				for i := 1; i < len(p.Records); i++ {
					if p.Records[i].Seq >= p.Records[i-1].Seq {
						errs <- fmt.Errorf("not newest first: %d after %d", p.Records[i].Seq, p.Records[i-1].Seq)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p, _ := s.CallRecords(100, 0)
	if len(p.Records) != 50 || p.Records[0].Seq != 160 || p.Skipped != 0 {
		t.Fatalf("after 160 concurrent adds: %d records, newest %d, skipped %d; want 50, 160, 0",
			len(p.Records), p.Records[0].Seq, p.Skipped)
	}
}
