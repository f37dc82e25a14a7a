package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
	"github.com/psigate/psigate/webui"
)

// call has the Zoom client call the PBX phone, which answers, and shows
// the call as the portal does once media flows both ways.
func (d *demo) call(ctx context.Context) error {
	target := "sip:" + phoneUser + "@" + sbctest.KamailioRealm
	d.say("the Zoom client calls %s", target)
	if err := d.zoom.command(ctx, "dial", target); err != nil {
		return err
	}
	if _, err := d.phone.await(ctx, "CALL_INCOMING", 10*time.Second); err != nil {
		return err
	}
	d.say("the PBX phone rings and answers")
	if err := d.phone.command(ctx, "accept", ""); err != nil {
		return err
	}
	if _, err := d.zoom.await(ctx, "CALL_ESTABLISHED", 10*time.Second); err != nil {
		return err
	}
	if _, err := d.phone.await(ctx, "CALL_ESTABLISHED", 5*time.Second); err != nil {
		return err
	}
	d.say("call established")
	c, err := d.activeCall(ctx, func(c webui.ActiveCall) bool {
		return !c.Answered.IsZero() && c.PacketsIn[0] > 0 && c.PacketsIn[1] > 0
	})
	if err != nil {
		return fmt.Errorf("the call in the portal, with media both ways: %w", err)
	}
	showActive(d.out, d.res.portal, c)
	return nil
}

// holdCall keeps the call up for the -hold time and shows it again.
func (d *demo) holdCall(ctx context.Context) error {
	d.say("holding the call for %v (-hold); watch it at %ssip/calls", d.o.hold, d.res.portal)
	t := time.NewTimer(d.o.hold)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
	}
	c, err := d.activeCall(ctx, func(webui.ActiveCall) bool { return true })
	if err != nil {
		return err
	}
	d.res.active = c
	showActive(d.out, d.res.portal, c)
	return nil
}

// activeCall waits up to 5 seconds for the portal to list one call for
// which ok is true, and returns it.
func (d *demo) activeCall(ctx context.Context, ok func(webui.ActiveCall) bool) (webui.ActiveCall, error) {
	var got []webui.ActiveCall
	err := poll(ctx, 5*time.Second, func() (bool, error) {
		got = nil
		if err := d.api.do(ctx, "GET", "/sip/calls", nil, &got, 200); err != nil {
			return false, err
		}
		return len(got) == 1 && ok(got[0]), nil
	})
	if errors.Is(err, errTimeout) {
		return webui.ActiveCall{}, fmt.Errorf("GET /api/v1/sip/calls shows %+v", got)
	}
	if err != nil {
		return webui.ActiveCall{}, err
	}
	return got[0], nil
}

// hangUp has the Zoom client hang up, waits until both phones and the
// portal have ended the call, and shows its entry in the call history.
func (d *demo) hangUp(ctx context.Context) error {
	d.say("the Zoom client hangs up")
	if err := d.zoom.command(ctx, "hangup", ""); err != nil {
		return err
	}
	if _, err := d.zoom.await(ctx, "CALL_CLOSED", 5*time.Second); err != nil {
		return err
	}
	closed, err := d.phone.await(ctx, "CALL_CLOSED", 5*time.Second)
	if err != nil {
		return err
	}
	d.say("the PBX phone's call ended too (%s)", closed.Param)
	var calls []webui.ActiveCall
	err = poll(ctx, 5*time.Second, func() (bool, error) {
		calls = nil
		err := d.api.do(ctx, "GET", "/sip/calls", nil, &calls, 200)
		return len(calls) == 0, err
	})
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("GET /api/v1/sip/calls still shows %d calls 5s after the hang-up", len(calls))
	}
	if err != nil {
		return err
	}
	ended, err := d.ended(ctx)
	if err != nil {
		return err
	}
	d.res.ended = ended
	showEnded(d.out, d.res.portal, ended)
	return nil
}

// ended waits for the call's record in the call history: it reaches
// the store within about a second of the call's end.
func (d *demo) ended(ctx context.Context) (webui.EndedCall, error) {
	var page webui.CallHistoryPage
	err := poll(ctx, 5*time.Second, func() (bool, error) {
		page = webui.CallHistoryPage{}
		err := d.api.do(ctx, "GET", "/sip/calls/history?limit=1", nil, &page, 200)
		return len(page.Calls) == 1 && strings.Contains(page.Calls[0].To, phoneUser), err
	})
	if errors.Is(err, errTimeout) {
		return webui.EndedCall{}, fmt.Errorf("GET /api/v1/sip/calls/history has no record of the call 5s after its end: %+v", page)
	}
	if err != nil {
		return webui.EndedCall{}, err
	}
	return page.Calls[0], nil
}

// stop stops everything the demo started, the phones first (they
// de-register through psigate), then the appliance and Kamailio, and
// removes the temporary folder. After a failure it shows the end of each
// program's log first.
func (d *demo) stop(failure error) error {
	switch {
	case errors.Is(failure, errInterrupted):
		d.say("interrupted: stopping everything")
	case failure != nil:
		d.showLogs()
	}
	var errs []error
	var stopped []string
	for _, p := range []*phone{d.zoom, d.phone} {
		if p == nil {
			continue
		}
		killed, _ := p.stop() // baresip's exit status says nothing useful
		stopped = append(stopped, p.name+killedNote(killed))
	}
	if d.api != nil {
		d.api.close()
	}
	if d.appliance != nil {
		killed, err := d.appliance.stop(20 * time.Second)
		switch {
		case killed:
			errs = append(errs, errors.New("the appliance did not stop within 20s of SIGTERM and was killed"))
		case err != nil:
			errs = append(errs, fmt.Errorf("the appliance exited with %v after SIGTERM\n%s", err, lastLines(d.appliance.out.String(), 20)))
		}
		stopped = append(stopped, fmt.Sprintf("the appliance (%s)", exitNote(killed, err)))
	}
	if d.kamailio != nil {
		d.kamailio.Stop()
		stopped = append(stopped, "Kamailio")
	}
	folder := "kept " + d.dir
	if !d.o.keep {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing the temporary folder: %w", err))
		}
		folder = "removed " + d.dir
	}
	if len(stopped) > 0 {
		d.say("stopped %s; %s", strings.Join(stopped, ", "), folder)
	} else {
		d.say("%s", folder)
	}
	return errors.Join(errs...)
}

// showLogs prints the end of each program's log, for a failed run.
func (d *demo) showLogs() {
	for _, p := range []*process{d.appliance, procOf(d.zoom), procOf(d.phone)} {
		if p != nil {
			fmt.Fprintf(d.out, "--- end of the log of %s:\n%s\n", p.name, lastLines(p.out.String(), 30))
		}
	}
	if d.kamailio != nil {
		fmt.Fprintf(d.out, "--- end of Kamailio's log:\n%s\n", d.kamailio.LogTail(30))
	}
}

func procOf(p *phone) *process {
	if p == nil {
		return nil
	}
	return p.proc
}

func killedNote(killed bool) string {
	if killed {
		return " (killed)"
	}
	return ""
}

func exitNote(killed bool, err error) string {
	switch {
	case killed:
		return "killed"
	case err != nil:
		return err.Error()
	}
	return "exit status 0"
}
