package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/webui"
)

// historyFake is a call history of n calls with IDs 1..n, paged as the
// store pages them; it remembers the last limit it was asked for.
type historyFake struct {
	calls      []webui.EndedCall // oldest first
	unreadable int

	mu    sync.Mutex
	limit int
}

func newHistory(n int) *historyFake {
	h := &historyFake{}
	ended := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for id := 1; id <= n; id++ {
		c := webui.EndedCall{
			ID: uint64(id), From: "sip:1001@pbx.example.com", To: fmt.Sprintf("sip:%d@pbx.example.com", 2000+id),
			Direction: "client to PBX", CallerAgent: "ZoomPbxPhone 6.1", CalleeAgent: "OpenScape 4000",
			CallID: fmt.Sprintf("call-id-%d", id), Started: ended.Add(-2 * time.Minute), Ended: ended,
			Result: "refused", Code: 486, Reason: "486 Busy Here",
		}
		if id%2 == 0 {
			c.Answered, c.DurationS, c.Result, c.Code, c.Reason = ended.Add(-90*time.Second), 90, "answered", 200, "caller hung up"
			c.Codecs, c.SRTP = [2]string{"G722", "PCMA"}, [2]bool{true, false}
			c.PacketsIn, c.PacketsOut, c.Lost = [2]uint64{4500, 4498}, [2]uint64{4498, 4500}, [2]int64{2, 0}
		}
		h.calls = append(h.calls, c)
		ended = ended.Add(time.Minute)
	}
	return h
}

func (h *historyFake) EndedCalls(limit int, before uint64) (webui.CallHistoryPage, error) {
	h.mu.Lock()
	h.limit = limit
	h.mu.Unlock()
	p := webui.CallHistoryPage{Unreadable: h.unreadable, Kept: len(h.calls)}
	for i := len(h.calls) - 1; i >= 0 && len(p.Calls) < limit; i-- {
		if c := h.calls[i]; before == 0 || c.ID < before {
			p.Calls = append(p.Calls, c)
		}
	}
	if n := len(p.Calls); n > 0 && p.Calls[n-1].ID > 1 {
		p.Next = p.Calls[n-1].ID
	}
	return p, nil
}

func (h *historyFake) asked() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.limit
}

func withHistory(h webui.CallHistory) kitOption { return func(o *webui.Options) { o.History = h } }

// ids are the page's call IDs.
func ids(p webui.CallHistoryPage) []uint64 {
	out := make([]uint64, len(p.Calls))
	for i, c := range p.Calls {
		out[i] = c.ID
	}
	return out
}

func TestCallHistoryNeedsLogin(t *testing.T) {
	k := newKit(t, withHistory(newHistory(3)))
	if r := k.get("/api/v1/sip/calls/history"); r.Status != http.StatusForbidden {
		t.Fatalf("before setup: %d, want 403", r.Status)
	}
	k.setup(goodPassword)
	r := k.do(req{Path: "/api/v1/sip/calls/history", Client: k.newClient(false)})
	wantStatus(t, r, http.StatusUnauthorized, "API without login")
	if r.Header.Get("WWW-Authenticate") == "" || strings.Contains(r.String(), "sip:") {
		t.Fatalf("API without login: %v %s", r.Header, r.Body)
	}
	wantRedirect(t, k.do(req{Path: "/sip/calls/history", Client: k.newClient(false)}), "/login", "page without login")
	k.login(goodPassword)
	r = k.do(req{Path: "/api/v1/sip/calls/history", Client: k.newClient(false), Header: k.bearer()})
	wantStatus(t, r, http.StatusOK, "API with a bearer token")
	r = k.do(req{Path: "/api/v1/sip/calls/history", Client: k.newClient(false), Header: map[string]string{"Authorization": "Basic YWRtaW46eA=="}})
	wantStatus(t, r, http.StatusUnauthorized, "API with another scheme")
}

func TestCallHistoryAPIPages(t *testing.T) {
	h := newHistory(120)
	k := ready(t, withHistory(h))
	var p webui.CallHistoryPage
	r := k.get("/api/v1/sip/calls/history")
	wantStatus(t, r, http.StatusOK, "history")
	r.JSON(t, &p)
	if got := ids(p); len(got) != 50 || got[0] != 120 || got[49] != 71 || p.Next != 71 {
		t.Fatalf("first page %v next %d, want 120..71 next 71", got, p.Next)
	}
	for _, key := range []string{`"callerUserAgent": "ZoomPbxPhone 6.1"`, `"calleeUserAgent": "OpenScape 4000"`, `"callId": "call-id-120"`,
		`"durationSeconds": 90`, `"result": "answered"`, `"codecs": [`, `"next": 71`, `"kept": 120`} {
		if !strings.Contains(r.String(), key) {
			t.Errorf("the answer lacks %s", key)
		}
	}
	if c := p.Calls[1]; c.Result != "refused" || c.Code != 486 || !c.Answered.IsZero() || strings.Contains(r.String(), `"answered": "0001`) {
		t.Errorf("a refused call: %+v (an unanswered call has no answered time)", c)
	}
	k.get("/api/v1/sip/calls/history?limit=30&before=71").JSON(t, &p)
	if got := ids(p); len(got) != 30 || got[0] != 70 || got[29] != 41 || p.Next != 41 {
		t.Fatalf("second page %v next %d, want 70..41 next 41", got, p.Next)
	}
	r = k.get("/api/v1/sip/calls/history?limit=100&before=41")
	p = webui.CallHistoryPage{}
	r.JSON(t, &p)
	if got := ids(p); len(got) != 40 || got[39] != 1 || p.Next != 0 || strings.Contains(r.String(), `"next"`) {
		t.Fatalf("last page %v next %d, want 40..1 and no next: %s", got, p.Next, r.Body)
	}
	k.get("/api/v1/sip/calls/history?limit=100000").JSON(t, &p)
	if len(p.Calls) != 120 || h.asked() != 500 {
		t.Fatalf("limit 100000: %d calls, history asked for %d, want 120 and the cap 500", len(p.Calls), h.asked())
	}
}

func TestCallHistoryMalformedQuery(t *testing.T) {
	k := ready(t, withHistory(newHistory(3)))
	for _, c := range []struct{ query, want string }{
		{"limit=abc", `limit must be a whole number of calls, 1 or more (at most 500 are returned); got "abc"`},
		{"limit=0", `got "0"`},
		{"limit=-5", `got "-5"`},
		{"limit=1.5", `got "1.5"`},
		{"before=x", `before must be a call record id, a whole number from 1 (the "next" of the page before); got "x"`},
		{"before=0", `before must be a call record id`},
		{"before=-1", `got "-1"`},
		{"before=99999999999999999999", `before must be a call record id`},
	} {
		r := k.get("/api/v1/sip/calls/history?" + c.query)
		wantStatus(t, r, http.StatusBadRequest, c.query)
		var e apiFieldError
		r.JSON(t, &e)
		if !strings.Contains(e.Error, c.want) || len(e.Fields) != 0 {
			t.Errorf("%s: %s, want an error with %s", c.query, r.Body, c.want)
		}
	}
	wantHTML(t, k.get("/sip/calls/history?before=abc"), http.StatusBadRequest, "page with a bad cursor",
		`id="error"`, "before must be a call record id", `id="call-history"`)
}

func TestCallHistoryPage(t *testing.T) {
	h := newHistory(60)
	h.unreadable = 2
	k := ready(t, withHistory(h))
	page := wantHTML(t, k.get("/sip/calls/history"), http.StatusOK, "history page",
		`<a href="/sip/calls/history" class="active">`, `id="call-history"`,
		"sip:1001@pbx.example.com<br><small>to</small> sip:2060@pbx.example.com", "<td>ZoomPbxPhone 6.1<br>OpenScape 4000</td>",
		"client to PBX", "call-id-60", "<td>1m30s</td>", `<td class="result-answered">answered</td>`, "<td>200</td>", "caller hung up",
		`<td class="result-refused">refused</td>`, "<td>486</td>", "486 Busy Here",
		"G722 / PCMA<br><small>SRTP</small> yes / no", "<small>caller</small> 4500 / 4498 / 2<br><small>callee</small> 4498 / 4500 / 0",
		"<td>-</td><td><small>caller</small> 0 / 0 / 0", // a call without media
		`id="unreadable">2 kept call records`, "60 ended calls are kept", `<a id="older" href="/sip/calls/history?before=11">`)
	if strings.Contains(page, `id="newest"`) || strings.Contains(page, "sip:2010@") {
		t.Error("the first page links to the newest or shows an older call")
	}
	page = wantHTML(t, k.get("/sip/calls/history?before=11&limit=5"), http.StatusOK, "older page",
		"sip:2010@pbx.example.com", "sip:2006@pbx.example.com", `<a id="newest" href="/sip/calls/history?limit=5">`,
		`<a id="older" href="/sip/calls/history?before=6&limit=5">`)
	if strings.Contains(page, "sip:2011@") || strings.Contains(page, "sip:2005@") {
		t.Error("the older page shows calls outside it")
	}
	wantHTML(t, k.get("/sip/calls/history?before=1"), http.StatusOK, "beyond the oldest", "No older call.")
	wantHTML(t, ready(t, withHistory(newHistory(0))).get("/sip/calls/history"), http.StatusOK, "empty history", "No call has ended yet.")
}

func TestCallHistoryNotKept(t *testing.T) {
	k := ready(t)
	wantHTML(t, k.get("/sip/calls/history"), http.StatusOK, "page", "The call history is not kept.")
	r := k.get("/api/v1/sip/calls/history")
	wantStatus(t, r, http.StatusOK, "API")
	if got := strings.Join(strings.Fields(r.String()), ""); got != `{"calls":[],"kept":0}` {
		t.Fatalf("API without a history: %s", r.Body)
	}
}

func TestDashboardCallCounts(t *testing.T) {
	withCounts := func(o *webui.Options) {
		base := o.Status
		o.Status = func(ctx context.Context) webui.Status {
			s := base(ctx)
			s.Calls, s.Last24h, s.RecordsLost = 2, webui.CallCounts{Answered: 31, Refused: 4, Cancelled: 3, Failed: 1}, 7
			return s
		}
	}
	k := ready(t, withCounts)
	wantHTML(t, k.get("/"), http.StatusOK, "dashboard", "2 in progress",
		`<a href="/sip/calls/history">31 answered, 4 refused, 3 cancelled, 1 failed</a>`, `id="records-lost">7 call records lost`)
	var st struct {
		Active  int              `json:"activeCalls"`
		Last24h webui.CallCounts `json:"callsLast24h"`
		Lost    uint64           `json:"callRecordsLost"`
	}
	k.get("/api/v1/status").JSON(t, &st)
	if st.Active != 2 || st.Last24h.Answered != 31 || st.Last24h.Failed != 1 || st.Lost != 7 {
		t.Fatalf("status %+v", st)
	}
	page := wantHTML(t, ready(t).get("/"), http.StatusOK, "fresh dashboard", "0 answered, 0 refused, 0 cancelled, 0 failed")
	if strings.Contains(page, "records-lost") {
		t.Error("a fresh dashboard shows records lost")
	}
}

// startedCalls is sipFake with a call that started 90 s before the
// kit's clock.
type startedCalls struct {
	sipFake
	started time.Time
}

func (s startedCalls) Calls() []webui.ActiveCall {
	c := s.sipFake.Calls()
	c[0].Started, c[0].Answered = s.started.Add(-5*time.Second), s.started // it rang for 5 s
	return c
}

// TestActiveCallDuration: an active call's duration counts from its
// answer.
func TestActiveCallDuration(t *testing.T) {
	sip := &startedCalls{}
	k := ready(t, withSIP(sip))
	sip.started = k.clock.Now().Add(-90 * time.Second)
	wantHTML(t, k.get("/sip/calls"), http.StatusOK, "calls page", "<th>Duration</th>", "<td>1m30s</td>", "G722 / G722", "yes / no",
		`<a href="/sip/calls/history">`)
}
