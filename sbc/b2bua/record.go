package b2bua

import (
	"time"

	"github.com/psigate/psigate/sbc/media/relay"
)

// Result is how a call ended, in one word.
type Result string

const (
	// Answered: the call was connected; Reason says who or what ended it.
	Answered Result = "answered"
	// Refused: the callee (or the PBX) answered with a final error.
	Refused Result = "refused"
	// Cancelled: the call was given up before the answer, by the caller
	// or by the no-answer timeout.
	Cancelled Result = "cancelled"
	// Failed: psigate could not connect the call (no route, no reply,
	// no ports, an offer it cannot take).
	Failed Result = "failed"
)

// Reasons a connected call ends with.
const (
	ReasonCallerBye    = "caller hung up"
	ReasonCalleeBye    = "callee hung up"
	ReasonMediaTimeout = "media timeout"
	ReasonSession      = "session timer expired"
	ReasonShutdown     = "service stopped"
	ReasonNoAck        = "no ACK"
)

// Record is a call detail record: one per call, written when it ends.
type Record struct {
	// From and To are the caller's and the callee's URIs as dialled.
	From string `json:"from"`
	To   string `json:"to"`
	// ToClient: the PBX called a subscriber (else a client called out).
	ToClient    bool   `json:"toClient"`
	CallerAgent string `json:"callerAgent,omitempty"`
	CalleeAgent string `json:"calleeAgent,omitempty"`
	// CallID is the caller's Call-ID (the dialog on the caller's side).
	CallID   string    `json:"callId"`
	Started  time.Time `json:"started"`
	Answered time.Time `json:"answered,omitzero"`
	Ended    time.Time `json:"ended"`
	Result   Result    `json:"result"`
	// Code is the final response the caller got: 200 for an answered
	// call, the error otherwise (486, 487, 408, ...).
	Code int `json:"code"`
	// Reason says why it ended: "caller hung up", "486 Busy Here", ...
	Reason string `json:"reason"`
	// Codecs, SRTP and the packet counts are per media leg: caller,
	// callee.
	Codecs     [2]string `json:"codecs"`
	SRTP       [2]bool   `json:"srtp"`
	PacketsIn  [2]uint64 `json:"packetsIn"`
	PacketsOut [2]uint64 `json:"packetsOut"`
	Lost       [2]int64  `json:"lost"`
}

// Duration is the connected time: zero for a call never answered.
func (r Record) Duration() time.Duration {
	if r.Answered.IsZero() {
		return 0
	}
	return r.Ended.Sub(r.Answered)
}

// withStats copies the media legs' final figures.
func (r *Record) withStats(codecs [2]string, st [2]relay.Stats) {
	r.Codecs = codecs
	for i := range st {
		r.SRTP[i] = st[i].SRTPIn
		r.PacketsIn[i], r.PacketsOut[i], r.Lost[i] = st[i].PacketsIn, st[i].PacketsOut, st[i].Lost
	}
}
