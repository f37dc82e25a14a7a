package b2bua

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Session timers (RFC 4028): the endpoints negotiate the interval with
// Session-Expires and Min-SE, which cross psigate, and refresh the
// session with re-INVITE or UPDATE, which psigate relays. psigate
// watches: a session whose interval passes without a refresh (a peer
// gone without BYE) ends with BYE on both legs, as a proxy that asked
// for the timer would (RFC 4028 section 10).

// sessionTimer watches one call's session interval.
type sessionTimer struct {
	mu       sync.Mutex
	t        *time.Timer
	interval time.Duration
	expire   func()
}

// sessionExpires reads a Session-Expires value ("1800;refresher=uac"),
// zero when there is none or it is malformed.
func sessionExpires(m message) time.Duration {
	h := header(m, "Session-Expires")
	if h == nil {
		return 0
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// sessionTimer starts watching a call whose 2xx set a session interval;
// nil without one.
func (b *B2BUA) sessionTimer(c *call, ok *sip.Response) *sessionTimer {
	d := sessionExpires(ok)
	if d == 0 {
		return nil
	}
	st := &sessionTimer{interval: d, expire: func() {
		b.log.Info("session timer expired", "call-id", c.info.CallID, "interval", d)
		c.hangup(b.log, nil, ReasonSession)
	}}
	st.t = time.AfterFunc(d, st.expire)
	return st
}

// refreshed restarts the interval on a 2xx to a refresh, which may set a
// new one.
func (st *sessionTimer) refreshed(ok *sip.Response) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if d := sessionExpires(ok); d > 0 {
		st.interval = d
	}
	st.t.Reset(st.interval)
}

func (st *sessionTimer) stop() {
	st.mu.Lock()
	st.t.Stop()
	st.mu.Unlock()
}
