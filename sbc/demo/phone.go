package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// phone is a baresip driven over its ctrl_tcp module: JSON messages
// framed as netstrings, menu commands (dial, accept, hangup) one way and
// call events the other.
type phone struct {
	name    string // "Zoom client", for messages
	proc    *process
	conn    net.Conn
	msgs    chan ctrlMsg // from the control connection; closed at its end
	pending []ctrlMsg    // events read while waiting for a response
	token   int
}

// ctrlMsg is an event or a command's response from ctrl_tcp.
type ctrlMsg struct {
	Event    bool   `json:"event"`
	Response bool   `json:"response"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
	Type     string `json:"type"`
	Param    string `json:"param"`
}

// phoneConfig is one baresip: its account line (baresip's accounts
// file), the loopback address it uses, its RTP ports and tone.
type phoneConfig struct {
	name      string
	dir       string // for its configuration and log; must exist
	host      netip.Addr
	account   string
	caFile    string // "" for none
	rtpPorts  string // "22400-22499"
	toneHz    int    // what it sends: a sine tone (ausine)
	quitAfter time.Duration
}

// startPhone starts a baresip with one account and connects to its
// control port. The control port is picked free before baresip binds it:
// should another program take it meanwhile, baresip runs without
// control, and another one is started on another port.
func startPhone(ctx context.Context, progs programs, c phoneConfig) (*phone, error) {
	for attempt := 1; ; attempt++ {
		port, err := freePort(netip.AddrFrom4([4]byte{127, 0, 0, 1}))
		if err != nil {
			return nil, err
		}
		if err := writePhoneConfig(progs, c, port); err != nil {
			return nil, err
		}
		// -t: baresip quits by itself should it outlive the demo.
		cmd := exec.Command(progs.baresip, "-f", c.dir, "-t", strconv.Itoa(int(c.quitAfter.Seconds())))
		proc, err := startProcess(c.name+" (baresip)", cmd, filepath.Join(c.dir, "baresip.log"))
		if err != nil {
			return nil, err
		}
		p := &phone{name: c.name, proc: proc}
		err = p.connect(ctx, port)
		if err == nil {
			return p, nil
		}
		p.proc.stop(5 * time.Second)
		if attempt == 3 || ctx.Err() != nil {
			return nil, fmt.Errorf("%s: no control connection: %w\n%s", c.name, err, lastLines(proc.out.String(), 20))
		}
	}
}

// writePhoneConfig writes baresip's config, accounts and contacts files:
// SIP and RTP on the phone's loopback address, a sine tone as the
// microphone (ausine), no sound card (aubridge plays into nothing), control on
// 127.0.0.1:ctrlPort.
func writePhoneConfig(progs programs, c phoneConfig, ctrlPort int) error {
	lines := []string{
		"poll_method epoll",
		"sip_listen " + netip.AddrPortFrom(c.host, 0).String(),
		"dns_server 127.0.0.1:53", // any lookup baresip makes stays on loopback
		"net_interface " + c.host.String(),
		"module_path " + progs.modules,
		"module_tmp account.so",
		"module g711.so",
		"module srtp.so",
		"module ausine.so",
		"module aubridge.so",
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		"ctrl_tcp_listen 127.0.0.1:" + strconv.Itoa(ctrlPort),
		"audio_source ausine," + strconv.Itoa(c.toneHz),
		"audio_player aubridge," + c.name,
		"audio_alert aubridge," + c.name,
		"ausrc_format s16",
		"ausrc_srate 48000", // ausine's only rate and layout; baresip resamples
		"ausrc_channels 2",
		"auplay_format s16",
		"rtp_ports " + c.rtpPorts,
		"rtcp_mux no",
	}
	if c.caFile != "" {
		lines = append(lines, "sip_cafile "+c.caFile)
	}
	files := map[string]string{"config": strings.Join(lines, "\n") + "\n", "accounts": c.account + "\n", "contacts": ""}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(content), 0o600); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// connect waits until baresip is ready and connects to its control port.
func (p *phone) connect(ctx context.Context, port int) error {
	if _, err := p.proc.waitOutput(ctx, "baresip is ready.", 10*time.Second); err != nil {
		return err
	}
	if strings.Contains(p.proc.out.String(), "ctrl_tcp: failed") {
		return fmt.Errorf("ctrl_tcp could not listen on port %d", port)
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	p.conn = conn
	p.msgs = make(chan ctrlMsg, 1000)
	go readNetstrings(conn, p.msgs)
	return nil
}

// readNetstrings reads ctrl_tcp's messages ("<length>:<JSON>,") until the
// connection ends, then closes msgs.
func readNetstrings(conn net.Conn, msgs chan<- ctrlMsg) {
	defer close(msgs)
	br := bufio.NewReader(conn)
	for {
		head, err := br.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(head[:len(head)-1])
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		body := make([]byte, n+1) // and the trailing ','
		if _, err := io.ReadFull(br, body); err != nil || body[n] != ',' {
			return
		}
		var m ctrlMsg
		if json.Unmarshal(body[:n], &m) != nil {
			continue
		}
		select {
		case msgs <- m:
		default: // nobody reads: drop rather than block
		}
	}
}

// command runs a menu command and waits up to 5 seconds for its response.
func (p *phone) command(ctx context.Context, command, params string) error {
	p.token++
	token := "t" + strconv.Itoa(p.token)
	req, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": token})
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(p.conn, "%d:%s,", len(req), req); err != nil {
		return fmt.Errorf("%s: sending %s: %w", p.name, command, err)
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case m, ok := <-p.msgs:
			switch {
			case !ok:
				return fmt.Errorf("%s: control connection closed before the response to %s", p.name, command)
			case m.Event:
				p.pending = append(p.pending, m)
			case m.Response && m.Token == token && !m.OK:
				return fmt.Errorf("%s: %s %s failed: %s", p.name, command, params, m.Data)
			case m.Response && m.Token == token:
				return nil
			}
		case <-timeout.C:
			return fmt.Errorf("%s: no response to %s within 5s", p.name, command)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// errCallClosed is await's error when the call closed while it waited for
// another event.
var errCallClosed = errors.New("the call closed")

// await waits for the next event of type typ (CALL_INCOMING,
// CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED), passing over others.
func (p *phone) await(ctx context.Context, typ string, timeout time.Duration) (ctrlMsg, error) {
	check := func(m ctrlMsg) (bool, error) {
		if m.Type == "CALL_CLOSED" && typ != "CALL_CLOSED" {
			return false, fmt.Errorf("%s: %w (%s) while waiting for %s", p.name, errCallClosed, m.Param, typ)
		}
		return m.Type == typ, nil
	}
	for len(p.pending) > 0 {
		m := p.pending[0]
		p.pending = p.pending[1:]
		if ok, err := check(m); ok || err != nil {
			return m, err
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				return m, fmt.Errorf("%s: control connection closed while waiting for %s", p.name, typ)
			}
			if !m.Event {
				continue
			}
			if ok, err := check(m); ok || err != nil {
				return m, err
			}
		case <-deadline.C:
			return ctrlMsg{}, fmt.Errorf("%s: no %s within %v", p.name, typ, timeout)
		case <-ctx.Done():
			return ctrlMsg{}, context.Cause(ctx)
		}
	}
}

// stop quits baresip (SIGTERM: it de-registers first) and closes the
// control connection.
func (p *phone) stop() (killed bool, err error) {
	killed, err = p.proc.stop(5 * time.Second)
	if p.conn != nil {
		p.conn.Close()
	}
	return killed, err
}
