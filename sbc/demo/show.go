package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/psigate/psigate/webui"
)

// showActive prints a call of GET /api/v1/sip/calls as the portal's
// active calls page shows it.
func showActive(w io.Writer, portal string, c webui.ActiveCall) {
	fmt.Fprintf(w, "\n    Active calls  (GET /api/v1/sip/calls; in the portal: %ssip/calls)\n", portal)
	fmt.Fprintf(w, "    %s -> %s, %s, answered %s, up %s\n", c.From, c.To, c.Direction,
		c.Answered.Local().Format(time.TimeOnly), time.Since(c.Answered).Round(time.Second))
	fmt.Fprintf(w, "    caller's User-Agent: %s\n", c.CallerAgent)
	showLegs(w, c.Codecs, c.SRTP, c.PacketsIn, c.PacketsOut, c.Lost)
}

// showEnded prints a record of GET /api/v1/sip/calls/history as the
// portal's call history page shows it.
func showEnded(w io.Writer, portal string, c webui.EndedCall) {
	fmt.Fprintf(w, "\n    Call history  (GET /api/v1/sip/calls/history; in the portal: %ssip/calls/history)\n", portal)
	fmt.Fprintf(w, "    #%d %s -> %s, %s\n", c.ID, c.From, c.To, c.Direction)
	fmt.Fprintf(w, "    %s (%d): %s; connected %.1f s, %s to %s\n", c.Result, c.Code, c.Reason, c.DurationS,
		c.Started.Local().Format(time.TimeOnly), c.Ended.Local().Format(time.TimeOnly))
	showLegs(w, c.Codecs, c.SRTP, c.PacketsIn, c.PacketsOut, c.Lost)
}

// showLegs prints the media legs of a call, caller then callee.
func showLegs(w io.Writer, codecs [2]string, srtp [2]bool, in, out [2]uint64, lost [2]int64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    leg\tcodec\tmedia\tpackets in\tpackets out\tlost")
	names := [2]string{"caller (Zoom client side)", "callee (PBX side)"}
	for leg := range 2 {
		media := "RTP"
		if srtp[leg] {
			media = "SRTP"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%d\t%d\t%d\n", names[leg], codecs[leg], media, in[leg], out[leg], lost[leg])
	}
	tw.Flush()
	fmt.Fprintln(w)
}
