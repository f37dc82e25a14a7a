package main

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
	"github.com/psigate/psigate/webui"
)

// options are the demo's flags.
type options struct {
	appliance string        // the appliance program, e.g. "./bin/appliance"
	httpAddr  string        // the portal's address, on loopback, e.g. "127.0.0.1:0"
	hold      time.Duration // how long the call stays up, e.g. 10s
	password  string        // the admin password; "" makes one up
	keep      bool          // keep the temporary folder
}

func (o options) check() error {
	ap, err := netip.ParseAddrPort(o.httpAddr)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("-http %q: want a loopback address and port, e.g. 127.0.0.1:8443", o.httpAddr)
	}
	if o.hold <= 0 || o.hold > time.Hour {
		return fmt.Errorf("-hold %v: want more than 0 and at most 1h", o.hold)
	}
	return nil
}

// result is what the demo showed, for its test.
type result struct {
	dir      string           // the temporary folder
	portal   string           // the portal's URL
	password string           // the admin password
	active   webui.ActiveCall // the call as GET /api/v1/sip/calls showed it at the end of the hold
	ended    webui.EndedCall  // its entry in GET /api/v1/sip/calls/history
}

// errInterrupted is run's error when ctx ended (Ctrl-C) before the demo
// did; everything is stopped all the same.
var errInterrupted = errors.New("interrupted")

// The accounts of the PBX (Kamailio), in its domain sbctest.KamailioRealm.
const (
	zoomUser, zoomPass   = "3001", "demo-3001-secret" // the Zoom client, through psigate
	phoneUser, phonePass = "3002", "demo-3002-secret" // a phone on the PBX
)

// Loopback addresses: psigate (both realms), Kamailio and the Zoom client
// on 127.0.0.1; the PBX phone on an address of its own, since Kamailio
// trusts calls from psigate's core address without a challenge, as a PBX
// trusts its SBC, and challenges its phones.
var (
	loopback  = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	phoneHost = netip.AddrFrom4([4]byte{127, 0, 0, 5})
)

// demo is one run: the programs it started and where it keeps their
// files.
type demo struct {
	o     options
	out   io.Writer
	progs programs
	dir   string
	start time.Time
	res   *result

	appliance   *process
	api         *api
	kamailio    *sbctest.Kamailio
	sip         sipSetup
	zoom, phone *phone
}

// run runs the demo, writing what happens to out, and stops everything it
// started before it returns, also when ctx ends first (errInterrupted).
func run(ctx context.Context, o options, out io.Writer) (res result, err error) {
	if err := o.check(); err != nil {
		return res, err
	}
	progs, err := findPrograms(o.appliance)
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "psigate-demo-")
	if err != nil {
		return res, err
	}
	d := &demo{o: o, out: out, progs: progs, dir: dir, start: time.Now(), res: &res}
	fmt.Fprintln(out, "psigate demo: the appliance, Kamailio as the PBX and two baresip clients, all on loopback; Ctrl-C stops them")
	res.dir = dir
	defer func() {
		if ctx.Err() != nil {
			err = errInterrupted
		}
		if serr := d.stop(err); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	for _, step := range []func(context.Context) error{
		d.startAppliance, d.startPBX, d.configure, d.startPhones, d.waitRegistered, d.call, d.holdCall, d.hangUp,
	} {
		if err := step(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// say prints one line of progress, with the time since the start.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// startAppliance runs the appliance with its data in the temporary
// folder and sets the admin password through the first-boot setup.
func (d *demo) startAppliance(ctx context.Context) error {
	data := filepath.Join(d.dir, "appliance")
	if err := os.Mkdir(data, 0o700); err != nil {
		return err
	}
	cmd := exec.Command(d.progs.appliance, "-data", data, "-http", d.o.httpAddr, "-drain", "5s")
	p, err := startProcess("the appliance", cmd, filepath.Join(d.dir, "appliance.log"))
	if err != nil {
		return err
	}
	d.appliance = p
	url, err := p.waitOutput(ctx, "psigate: admin portal at ", 30*time.Second)
	if err != nil {
		return err
	}
	password := d.o.password
	if password == "" {
		password = "demo-" + rand.Text()[:12]
	}
	d.api = newAPI(url)
	if err := d.api.setup(ctx, password); err != nil {
		return err
	}
	d.res.portal, d.res.password = url, password
	d.say("psigate appliance started (%s), data in %s", d.progs.appliance, data)
	fmt.Fprintf(d.out, "\n    Admin portal  %s  (self-signed certificate: accept it in the browser)\n", url)
	fmt.Fprintf(d.out, "    Log in as     admin / %s  (set through the first-boot setup)\n\n", password)
	return nil
}

// startPBX runs Kamailio as the PBX: the two users, calls between them,
// psigate's core address trusted.
func (d *demo) startPBX(ctx context.Context) error {
	dir := filepath.Join(d.dir, "kamailio")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	k, err := sbctest.RunKamailio(d.progs.kamailio, dir, sbctest.KamailioOptions{
		Users:   map[string]string{zoomUser: zoomPass, phoneUser: phonePass},
		Listen:  loopback,
		Calls:   true,
		Trusted: []netip.Addr{loopback},
	})
	if err != nil {
		return err
	}
	d.kamailio = k
	d.say("Kamailio started as the PBX on %s (UDP, TCP), users %s and %s in domain %s", k.Addr, zoomUser, phoneUser, sbctest.KamailioRealm)
	return ctx.Err()
}

// configure sets up psigate's SIP side through the API and waits until
// it runs.
func (d *demo) configure(ctx context.Context) error {
	tlsPort, err := freePort(loopback)
	if err != nil {
		return err
	}
	corePort, err := freePort(loopback)
	for err == nil && corePort == tlsPort {
		corePort, err = freePort(loopback)
	}
	if err != nil {
		return err
	}
	d.sip = sipSetup{
		access: netip.AddrPortFrom(loopback, uint16(tlsPort)),
		core:   netip.AddrPortFrom(loopback, uint16(corePort)),
		pbx:    d.kamailio.Addr,
	}
	rev, err := configure(ctx, d.api, d.sip)
	if err != nil {
		return fmt.Errorf("configuring psigate: %w", err)
	}
	if err := waitSIP(ctx, d.sip.access, d.api.certificate()); err != nil {
		return err
	}
	d.say("psigate configured through the API and applied (revision %d):", rev)
	fmt.Fprintf(d.out, "          access realm  TLS %s  (Zoom clients register here; SRTP)\n", d.sip.access)
	fmt.Fprintf(d.out, "          core realm    TCP %s  (towards the PBX; RTP)\n", d.sip.core)
	fmt.Fprintf(d.out, "          PBX node      kamailio at %s over TCP\n", d.sip.pbx)
	return nil
}

// startPhones runs the two baresips: the Zoom client registers through
// psigate over TLS and calls with SRTP only; the PBX phone registers at
// Kamailio over UDP.
func (d *demo) startPhones(ctx context.Context) error {
	caFile := filepath.Join(d.dir, "psigate-ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.api.certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		return err
	}
	common := ";regint=600;mwi=no;answermode=manual;audio_codecs=PCMA"
	quit := d.o.hold + 2*time.Minute
	configs := []phoneConfig{{
		name: "Zoom client", dir: filepath.Join(d.dir, "zoom-client"), host: loopback, caFile: caFile,
		rtpPorts: zoomRTPPorts, toneHz: 1000, quitAfter: quit,
		account: fmt.Sprintf(`<sip:%s@%s;transport=tls>;auth_pass=%s;outbound="sip:%s;transport=tls";mediaenc=srtp-mand%s`,
			zoomUser, sbctest.KamailioRealm, zoomPass, d.sip.access, common),
	}, {
		name: "PBX phone", dir: filepath.Join(d.dir, "pbx-phone"), host: phoneHost,
		rtpPorts: phoneRTPPorts, toneHz: 600, quitAfter: quit,
		account: fmt.Sprintf(`<sip:%s@%s>;auth_pass=%s;outbound="sip:%s"%s`,
			phoneUser, sbctest.KamailioRealm, phonePass, d.kamailio.Addr, common),
	}}
	for i, c := range configs {
		if err := os.Mkdir(c.dir, 0o700); err != nil {
			return err
		}
		p, err := startPhone(ctx, d.progs, c)
		if err != nil {
			return err
		}
		if i == 0 {
			d.zoom = p
		} else {
			d.phone = p
		}
	}
	d.say("baresip started twice: the Zoom client (%s, via psigate %s) and the PBX phone (%s, at Kamailio)",
		zoomUser, d.sip.access, phoneUser)
	return nil
}

// waitRegistered waits until the portal lists the Zoom client's
// registration and Kamailio holds both users' (the Zoom client's as
// psigate relayed it).
func (d *demo) waitRegistered(ctx context.Context) error {
	zoomAOR := "sip:" + zoomUser + "@" + sbctest.KamailioRealm
	var zoomSeen, phoneSeen bool
	var why string
	err := poll(ctx, 20*time.Second, func() (bool, error) {
		why = ""
		var regs []webui.Registration
		if err := d.api.do(ctx, "GET", "/sip/registrations", nil, &regs, 200); err != nil {
			return false, err
		}
		locs, err := d.kamailio.LocationTable()
		if err != nil {
			return false, err
		}
		atPBX := map[string]sbctest.Location{}
		for _, l := range locs {
			atPBX[l.AOR] = l
		}
		for _, r := range regs {
			if r.AOR == zoomAOR && !zoomSeen && atPBX[zoomUser].AOR != "" {
				zoomSeen = true
				d.say("the Zoom client %s is registered through psigate: %s from %s, relayed to PBX node %s", zoomUser, r.Transport, r.Source, r.Node)
			}
		}
		if l, ok := atPBX[phoneUser]; ok && !phoneSeen {
			phoneSeen = true
			d.say("the PBX phone %s is registered at Kamailio from %s", phoneUser, strings.TrimPrefix(l.Received, "sip:"))
		}
		if !zoomSeen {
			why = "the Zoom client " + zoomUser + " is not registered through psigate"
		} else if !phoneSeen {
			why = "the PBX phone " + phoneUser + " is not registered at Kamailio"
		}
		return why == "", nil
	})
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("not registered within 20s: %s", why)
	}
	return err
}
