package sbc

// A baresip driven by a test over its ctrl_tcp module, and what its SIP
// trace and recordings tell about its calls.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// baresipPhone is a baresip driven over its ctrl_tcp module (JSON
// messages framed as netstrings): menu commands such as dial, accept and
// hangup, and the call events it reports.
type baresipPhone struct {
	name string // "A" or "B", for messages
	dir  string // config, tone and recordings
	proc *baresipSBC
	conn net.Conn
	msgs chan baresipMsg // from the control connection; closed at its end
	// pending are events read while waiting for a command's response;
	// seen are the events the test has looked at, for failure messages.
	pending, seen []baresipMsg
	token         int
}

// baresipMsg is an event or a command's response from ctrl_tcp.
type baresipMsg struct {
	Event    bool   `json:"event"`
	Response bool   `json:"response"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
	Type     string `json:"type"`
	Param    string `json:"param"`
	// CallID is the baresip call an event is about (its SIP Call-ID).
	CallID string `json:"id"`
}

// startBaresipPhone starts a baresip on host with the one account,
// playing a tone of toneHz, recording what it receives into its
// directory, its RTP on rtpPorts, and connects to its control port.
func startBaresipPhone(t *testing.T, name, bin, modules string, host netip.Addr, caFile, rtpPorts string, toneHz float64, account string) *baresipPhone {
	t.Helper()
	dir := t.TempDir()
	wav := filepath.Join(dir, "tone.wav")
	if err := os.WriteFile(wav, toneWAV(toneHz, 20*time.Second), 0o644); err != nil {
		t.Fatal(err)
	}
	// The control port is picked free before baresip binds it: should
	// another take it meanwhile, baresip starts without control, and a
	// new one is started on another port.
	for attempt := 1; ; attempt++ {
		ctrlPort := freeTCPPort(t)
		writeBaresipConfigOn(t, dir, host, modules, caFile, account,
			"module g711.so",
			"module srtp.so",
			"module aufile.so",
			"module aubridge.so",
			"module sndfile.so",  // records each call's audio, both ways
			"module_app menu.so", // the commands
			"module_app ctrl_tcp.so",
			"ctrl_tcp_listen 127.0.0.1:"+strconv.Itoa(ctrlPort),
			"audio_source aufile,"+wav,
			// aubridge: a player that needs no sound card.
			"audio_player aubridge,"+name,
			"audio_alert aubridge,"+name,
			"ausrc_format s16",
			"auplay_format s16",
			"snd_path "+dir,
			"rtp_ports "+rtpPorts,
			"rtcp_mux no",
		)
		p := &baresipPhone{name: name, dir: dir, proc: startBaresipSBC(t, bin, dir)}
		err := p.connect(ctrlPort)
		if err == nil {
			t.Cleanup(func() {
				p.conn.Close()
				if t.Failed() {
					t.Logf("baresip %s's events: %s", name, p.events())
				}
			})
			return p
		}
		p.proc.stop(t, 5*time.Second)
		if attempt == 3 {
			t.Fatalf("baresip %s: no control connection: %v\n%s", name, err, tail(p.proc.output(), 30))
		}
	}
}

// connect waits until baresip is ready and connects to its control port.
func (p *baresipPhone) connect(port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.proc.output(), "baresip is ready.") {
		select {
		case <-p.proc.exited:
			return fmt.Errorf("baresip exited while starting")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("baresip not ready after 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	if strings.Contains(p.proc.output(), "ctrl_tcp: failed") {
		return fmt.Errorf("ctrl_tcp could not listen on port %d", port)
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		return err
	}
	p.conn = conn
	p.msgs = make(chan baresipMsg, 1000)
	go readNetstrings(conn, p.msgs)
	return nil
}

// readNetstrings reads ctrl_tcp's messages ("<length>:<JSON>,") until the
// connection ends, then closes msgs. A message it cannot read ends it too.
func readNetstrings(conn net.Conn, msgs chan<- baresipMsg) {
	defer close(msgs)
	br := bufio.NewReader(conn)
	for range 100000 { // a call's worth of events, with room to spare
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
		var m baresipMsg
		if json.Unmarshal(body[:n], &m) != nil {
			continue
		}
		select {
		case msgs <- m:
		default: // nobody reads: drop rather than block the reader
		}
	}
}

// command runs a menu command and waits up to 5 seconds for its response.
func (p *baresipPhone) command(t *testing.T, command, params string) string {
	t.Helper()
	p.token++
	token := "t" + strconv.Itoa(p.token)
	req, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": token})
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(p.conn, "%d:%s,", len(req), req); err != nil {
		t.Fatalf("baresip %s: sending %s: %v", p.name, command, err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-p.msgs:
			switch {
			case !ok:
				t.Fatalf("baresip %s: control connection closed before the response to %s\n%s", p.name, command, tail(p.proc.output(), 30))
			case m.Event:
				p.pending = append(p.pending, m)
			case m.Response && m.Token == token:
				if !m.OK {
					t.Fatalf("baresip %s: %s %s failed: %s", p.name, command, params, m.Data)
				}
				return m.Data
			}
		case <-timeout:
			t.Fatalf("baresip %s: no response to %s within 5s\n%s", p.name, command, tail(p.proc.output(), 30))
		}
	}
}

// await waits for the next event of type typ (CALL_INCOMING, CALL_RINGING,
// CALL_ESTABLISHED, CALL_CLOSED), passing over others. It fails the test
// with the events seen and baresip's output if none comes in time, or if
// the call closes while waiting for something else.
func (p *baresipPhone) await(t *testing.T, typ string, timeout time.Duration) baresipMsg {
	t.Helper()
	give := func(m baresipMsg) (baresipMsg, bool) {
		p.seen = append(p.seen, m)
		if m.Type == "CALL_CLOSED" && typ != "CALL_CLOSED" {
			t.Fatalf("baresip %s: the call closed (%s) while waiting for %s; events: %s\n%s", p.name, m.Param, typ, p.events(), tail(p.proc.output(), 40))
		}
		return m, m.Type == typ
	}
	for len(p.pending) > 0 {
		m := p.pending[0]
		p.pending = p.pending[1:]
		if m, ok := give(m); ok {
			return m
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				t.Fatalf("baresip %s: control connection closed while waiting for %s; events: %s\n%s", p.name, typ, p.events(), tail(p.proc.output(), 40))
			}
			if !m.Event {
				continue
			}
			if m, ok := give(m); ok {
				return m
			}
		case <-deadline:
			t.Fatalf("baresip %s: no %s within %v; events: %s\n%s", p.name, typ, timeout, p.events(), tail(p.proc.output(), 40))
		}
	}
}

// events lists the events looked at so far, for failure messages.
func (p *baresipPhone) events() string {
	var s []string
	for _, m := range p.seen {
		s = append(s, m.Type+"("+m.Param+")")
	}
	return strings.Join(s, " ")
}

// recordings are the files baresip's sndfile module writes what it
// decodes of each call into ("dump-<time>-dec.wav"), oldest first: the
// time, to the second, sorts them.
func (p *baresipPhone) recordings() []string {
	files, _ := filepath.Glob(filepath.Join(p.dir, "dump-*-dec.wav"))
	slices.Sort(files)
	return files
}

// recording is the latest call's recording; "" before there is one.
func (p *baresipPhone) recording(t *testing.T) string {
	t.Helper()
	files := p.recordings()
	if len(files) == 0 {
		return ""
	}
	return files[len(files)-1]
}

// recorded is how many samples the latest call's recording holds.
func (p *baresipPhone) recorded(t *testing.T) int {
	t.Helper()
	f := p.recording(t)
	if f == "" {
		return 0
	}
	fi, err := os.Stat(f)
	if err != nil || fi.Size() < 44 {
		return 0
	}
	return int(fi.Size()-44) / 2
}

// waitRecording waits until baresip has recorded d of the latest call's
// received audio (sound or not), 10 seconds at most.
func (p *baresipPhone) waitRecording(t *testing.T, d time.Duration) {
	t.Helper()
	want := int(toneRate * d.Seconds())
	deadline := time.Now().Add(10 * time.Second)
	for p.recorded(t) < want {
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s recorded less than %v of the call within 10s\n%s", p.name, d, tail(p.proc.output(), 30))
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// checkHeard checks that the latest call's recording holds the tone of
// freq Hz.
func (p *baresipPhone) checkHeard(t *testing.T, freq float64) {
	t.Helper()
	rep, ok := p.heard(t)
	if !ok {
		return
	}
	t.Logf("%s heard: %v", p.name, rep)
	if err := rep.hasTone(freq, heardAtLeast); err != nil {
		t.Errorf("baresip %s did not hear the other side's tone: %v", p.name, err)
	}
}

// heard is what the latest call's recording holds; false (and the test
// failed) without a recording.
func (p *baresipPhone) heard(t *testing.T) (toneReport, bool) {
	t.Helper()
	f := p.recording(t)
	if f == "" {
		t.Errorf("baresip %s recorded nothing", p.name)
		return toneReport{}, false
	}
	x, rate, err := readWAV(f)
	if err != nil {
		t.Errorf("baresip %s's recording: %v", p.name, err)
		return toneReport{}, false
	}
	return analyseTone(x, rate), true
}

// finalResponse is the status of the last final response to an INVITE
// in baresip's SIP trace, waiting up to 5 seconds for one: baresip's
// output may come after the event that the call closed.
func (p *baresipPhone) finalResponse(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code := 0
		for _, m := range baresipTrace(p.proc.output()) {
			res, ok := m.msg.(*sip.Response)
			if ok && res.CSeq() != nil && res.CSeq().MethodName == sip.INVITE && res.StatusCode >= 200 {
				code = res.StatusCode
			}
		}
		if code != 0 || time.Now().After(deadline) {
			return code
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// tracedMsg is a SIP message in baresip's trace (-s).
type tracedMsg struct {
	transport, from, to string // "TLS", "127.0.0.1:41000", "127.0.0.1:5061"
	raw                 string
	msg                 sip.Message // nil if sipgo cannot parse it
}

// traceRE finds the messages in baresip's trace: a coloured "#", a line
// "<transport> <from> -> <to>", the message, the colour reset.
var traceRE = regexp.MustCompile("(?s)\x1b\\[36;1m#\n(\\S+) (\\S+) -> (\\S+)\n(.*?)\x1b\\[;m")

func baresipTrace(out string) []tracedMsg {
	var msgs []tracedMsg
	for _, m := range traceRE.FindAllStringSubmatch(out, -1) {
		tm := tracedMsg{transport: m[1], from: m[2], to: m[3], raw: m[4]}
		tm.msg, _ = sip.ParseMessage([]byte(m[4]))
		msgs = append(msgs, tm)
	}
	return msgs
}

// mediaEnd is one side's media as its SDP gives it.
type mediaEnd struct {
	addr   netip.AddrPort
	proto  string      // "RTP/SAVP", "RTP/AVP"
	crypto sdes.Crypto // the key it sends with; zero for plain RTP
}

// callMedia is the offer and the answer of the phone's call.
type callMedia struct {
	callID        string
	offer, answer mediaEnd
}

// callMedia reads the offer and answer that set up the phone's call from
// its SIP trace: the first 2xx with SDP to an INVITE, and that INVITE
// (the one that passed the challenge, when there was one). Later
// re-INVITEs change directions, not addresses or keys. With SRTP the
// offer's key is the one whose tag the answer accepted.
func (p *baresipPhone) callMedia(t *testing.T) callMedia {
	t.Helper()
	type key struct {
		callID string
		cseq   uint32
	}
	invites := map[key]*sip.Request{}
	var offer, answer sip.Message
	var cm callMedia
	for _, m := range baresipTrace(p.proc.output()) {
		if m.msg == nil || len(m.msg.Body()) == 0 || m.msg.CSeq() == nil || m.msg.CallID() == nil {
			continue
		}
		k := key{m.msg.CallID().Value(), m.msg.CSeq().SeqNo}
		switch msg := m.msg.(type) {
		case *sip.Request:
			if msg.Method == sip.INVITE && invites[k] == nil {
				invites[k] = msg
			}
		case *sip.Response:
			if answer == nil && msg.IsSuccess() && msg.CSeq().MethodName == sip.INVITE && invites[k] != nil {
				offer, answer, cm.callID = invites[k], msg, k.callID
			}
		}
	}
	if offer == nil || answer == nil {
		t.Fatalf("baresip %s's trace has no INVITE with SDP and 2xx with SDP to it\n%s", p.name, tail(p.proc.output(), 40))
	}
	var err error
	if cm.answer, err = parseMediaEnd(answer.Body(), -1); err != nil {
		t.Fatalf("baresip %s's call: answer: %v\n%s", p.name, err, answer.Body())
	}
	tag := -1
	if cm.answer.proto == "RTP/SAVP" {
		tag = cm.answer.crypto.Tag
	}
	if cm.offer, err = parseMediaEnd(offer.Body(), tag); err != nil {
		t.Fatalf("baresip %s's call: offer: %v\n%s", p.name, err, offer.Body())
	}
	return cm
}

// parseMediaEnd reads the first audio stream of an SDP body; with SDES,
// the key of tag (any key if tag < 0).
func parseMediaEnd(body []byte, tag int) (mediaEnd, error) {
	var d sdp.SessionDescription
	if err := d.Unmarshal(body); err != nil {
		return mediaEnd{}, err
	}
	if len(d.MediaDescriptions) == 0 {
		return mediaEnd{}, fmt.Errorf("no media")
	}
	m := d.MediaDescriptions[0]
	c := d.ConnectionInformation
	if m.ConnectionInformation != nil {
		c = m.ConnectionInformation
	}
	if c == nil || c.Address == nil {
		return mediaEnd{}, fmt.Errorf("no connection address")
	}
	ip, err := netip.ParseAddr(c.Address.Address)
	if err != nil {
		return mediaEnd{}, err
	}
	e := mediaEnd{addr: netip.AddrPortFrom(ip, uint16(m.MediaName.Port.Value)), proto: strings.Join(m.MediaName.Protos, "/")}
	for _, a := range m.Attributes {
		if a.Key != "crypto" {
			continue
		}
		c, err := sdes.Parse(a.Value)
		if err != nil {
			return mediaEnd{}, fmt.Errorf("a=crypto:%s: %w", a.Value, err)
		}
		if tag < 0 || c.Tag == tag {
			e.crypto = c
			break
		}
	}
	if e.proto == "RTP/SAVP" && e.crypto.Suite == "" {
		return mediaEnd{}, fmt.Errorf("RTP/SAVP without a key (tag %d)", tag)
	}
	return e, nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
