package sbc

// tshark capturing a call's media on loopback, and the checks of what it
// captured: SRTP on the access leg, plain RTP on the core leg.

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// rtpCapture is tshark capturing the tests' UDP port range on loopback
// into a file.
type rtpCapture struct {
	bin, file string
	cmd       *exec.Cmd
	exited    chan struct{}
	stderr    syncBuffer
}

// startRTPCapture starts tshark and waits until it captures. The capture
// is bounded: 30 seconds and 20000 packets at most.
func startRTPCapture(t *testing.T, bin string) *rtpCapture {
	t.Helper()
	c := &rtpCapture{bin: bin, file: filepath.Join(t.TempDir(), "call.pcapng"), exited: make(chan struct{})}
	c.cmd = exec.Command(bin, "-i", "lo", "-n",
		"-f", fmt.Sprintf("udp portrange %d-%d", callPortsLow, callPortsHigh),
		"-a", "duration:30", "-c", "20000", "-w", c.file)
	c.cmd.Stderr = &c.stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting tshark: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("tshark:\n%s", c.stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.stderr.String(), "Capturing on") {
		select {
		case <-c.exited:
			t.Fatalf("tshark exited before capturing:\n%s", c.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tshark not capturing after 10s:\n%s", c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	return c
}

// stop ends the capture (SIGINT, as at a terminal: tshark completes the
// file) and waits for tshark, killing it after 10 seconds.
func (c *rtpCapture) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Fatalf("tshark did not stop within 10s of SIGINT:\n%s", c.stderr.String())
	}
}

// capturedRTP is one datagram of the capture, decoded as RTP.
type capturedRTP struct {
	src, dst netip.AddrPort
	at       time.Time // when tshark captured it
	pt       uint8
	payload  []byte // RTP payload as tshark sees it: with SRTP, the ciphertext and the tag
	datagram []byte // the whole UDP payload
}

// rtp reads the capture, decoding UDP to and from each of ports as RTP
// (tshark's decode-as), and returns the RTP datagrams in capture order.
func (c *rtpCapture) rtp(t *testing.T, ports ...uint16) []capturedRTP {
	t.Helper()
	args := []string{"-r", c.file, "-n"}
	for _, p := range ports {
		args = append(args, "-d", fmt.Sprintf("udp.port==%d,rtp", p))
	}
	args = append(args, "-Y", "rtp", "-T", "fields", "-E", "separator=/t",
		"-e", "frame.time_epoch", "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
		"-e", "rtp.p_type", "-e", "rtp.payload", "-e", "udp.payload")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark reading the capture: %v\n%s", err, stderr.String())
	}
	var pkts []capturedRTP
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(f) != 8 {
			t.Fatalf("tshark: unexpected line %q", line)
		}
		at, err0 := strconv.ParseFloat(f[0], 64)
		src, err1 := netip.ParseAddrPort(f[1] + ":" + f[2])
		dst, err2 := netip.ParseAddrPort(f[3] + ":" + f[4])
		pt, err3 := strconv.ParseUint(f[5], 10, 7)
		payload, err4 := hex.DecodeString(strings.ReplaceAll(f[6], ":", ""))
		datagram, err5 := hex.DecodeString(strings.ReplaceAll(f[7], ":", ""))
		for _, err := range []error{err0, err1, err2, err3, err4, err5} {
			if err != nil {
				t.Fatalf("tshark: line %q: %v", line, err)
			}
		}
		pkts = append(pkts, capturedRTP{at: time.Unix(0, int64(at*1e9)), src: src, dst: dst, pt: uint8(pt), payload: payload, datagram: datagram})
	}
	return pkts
}

// g711Frame is the payload of 20 ms of G.711, baresip's packetization.
const g711Frame = 160

// checkCapturedMedia checks the four RTP streams of the call as captured:
// SRTP both ways on the access leg, RTP with the tones on the core leg.
func checkCapturedMedia(t *testing.T, c *rtpCapture, access, core callMedia) {
	t.Helper()
	if access.offer.proto != "RTP/SAVP" || access.answer.proto != "RTP/SAVP" {
		t.Errorf("access leg SDP: A offered %s, the SBC answered %s; want RTP/SAVP both", access.offer.proto, access.answer.proto)
	}
	if core.offer.proto != "RTP/AVP" || core.answer.proto != "RTP/AVP" {
		t.Errorf("core leg SDP: the SBC offered %s, B answered %s; want RTP/AVP both", core.offer.proto, core.answer.proto)
	}
	f := c.callFlows(t, access, core)
	checkSRTPStream(t, "A -> SBC", f.aToSBC, access.offer.crypto, toneA)
	checkSRTPStream(t, "SBC -> A", f.sbcToA, access.answer.crypto, toneB)
	checkRTPStream(t, "SBC -> B", f.sbcToB, toneA)
	checkRTPStream(t, "B -> SBC", f.bToSBC, toneB)
}

// callFlows are the four RTP streams of a call between A (through the
// SBC) and B, as captured, each in capture order.
type callFlows struct {
	aToSBC, sbcToA, sbcToB, bToSBC []capturedRTP
}

// callFlows sorts the capture into the call's streams, by the ports the
// offer and the answer of each leg name. By port: baresip sends RTP from
// its port on any address (B's SDP names 127.0.0.5, its packets leave
// from 127.0.0.1), and the SBC answers where they came from.
func (c *rtpCapture) callFlows(t *testing.T, access, core callMedia) callFlows {
	t.Helper()
	a, sbcA := access.offer.addr.Port(), access.answer.addr.Port()
	sbcB, b := core.offer.addr.Port(), core.answer.addr.Port()
	flows := map[[2]uint16][]capturedRTP{}
	for _, p := range c.rtp(t, a, sbcA, sbcB, b) {
		if !p.src.Addr().IsLoopback() || !p.dst.Addr().IsLoopback() {
			t.Errorf("captured RTP off loopback: %s -> %s", p.src, p.dst)
		}
		k := [2]uint16{p.src.Port(), p.dst.Port()}
		if len(flows[k]) == 0 {
			t.Logf("captured %s -> %s", p.src, p.dst)
		}
		flows[k] = append(flows[k], p)
	}
	return callFlows{
		aToSBC: flows[[2]uint16{a, sbcA}], sbcToA: flows[[2]uint16{sbcA, a}],
		sbcToB: flows[[2]uint16{sbcB, b}], bToSBC: flows[[2]uint16{b, sbcB}],
	}
}

// capturedAudio is one packet's audio: 20 ms of A-law decoded, decrypted
// first for SRTP.
type capturedAudio struct {
	at time.Time
	x  []float64
}

// decodeStream decodes a stream's G.711 A-law packets in capture order,
// decrypting them under key when it is set (SRTP: one context for the
// whole stream, so the rollover counter follows it); bad counts the
// packets that are not 20 ms of A-law or do not authenticate.
func decodeStream(t *testing.T, pkts []capturedRTP, key *sdes.Crypto) (audio []capturedAudio, bad int) {
	t.Helper()
	var ctx *srtp.Context
	if key != nil {
		var err error
		if ctx, err = key.Context(); err != nil {
			t.Fatalf("key %s: %v", key.Suite, err)
		}
	}
	for _, p := range pkts {
		payload := p.payload
		if ctx != nil {
			var h rtp.Header
			dec, err := ctx.DecryptRTP(nil, p.datagram, &h)
			if err != nil {
				bad++
				continue
			}
			payload = dec[h.MarshalSize():]
		}
		if p.pt != 8 || len(payload) != g711Frame {
			bad++
			continue
		}
		audio = append(audio, capturedAudio{at: p.at, x: alaw(payload)})
	}
	return audio, bad
}

// between is the audio of the packets captured from from until to, and
// how many packets that is.
func between(audio []capturedAudio, from, to time.Time) (x []float64, packets int) {
	for _, a := range audio {
		if !a.at.Before(from) && a.at.Before(to) {
			x = append(x, a.x...)
			packets++
		}
	}
	return x, packets
}

// srtpTagLen is the authentication tag's length of an SDES suite.
func srtpTagLen(suite string) int {
	if strings.HasSuffix(suite, "_32") {
		return 4
	}
	return 10 // HMAC-SHA1-80; AEAD's tag is 16, but its payload check below fails loudly then
}

// checkSRTPStream checks one direction of the access leg: every G.711
// packet has 20 ms of ciphertext and the suite's authentication tag, the
// ciphertext played as A-law is noise, not the tone, and the datagrams
// authenticate and decrypt under key to the tone of freq Hz.
func checkSRTPStream(t *testing.T, name string, pkts []capturedRTP, key sdes.Crypto, freq float64) {
	t.Helper()
	if len(pkts) < 50 {
		t.Errorf("%s: %d RTP packets captured, want a second's worth (50) at least", name, len(pkts))
		return
	}
	tagLen := srtpTagLen(key.Suite)
	ctx, err := key.Context()
	if err != nil {
		t.Fatalf("%s: key %s: %v", name, key.Suite, err)
	}
	var cipher, plain []float64
	var otherPT, wrongSize, failed int
	for _, p := range pkts {
		if p.pt != 8 {
			otherPT++
			continue
		}
		if len(p.payload) != g711Frame+tagLen {
			wrongSize++
			continue
		}
		cipher = append(cipher, alaw(p.payload[:g711Frame])...)
		var h rtp.Header
		dec, err := ctx.DecryptRTP(nil, p.datagram, &h)
		if err != nil {
			failed++
			continue
		}
		plain = append(plain, alaw(dec[h.MarshalSize():])...)
	}
	if otherPT > 0 {
		t.Errorf("%s: %d of %d packets have a payload type other than 8 (PCMA, the codec both baresips are limited to)", name, otherPT, len(pkts))
	}
	if wrongSize > 0 {
		t.Errorf("%s: %d of %d packets have a payload that is not %d bytes of G.711 and a %d-byte tag (%s)", name, wrongSize, len(pkts), g711Frame, tagLen, key.Suite)
	}
	if failed > 0 {
		t.Errorf("%s: %d of %d packets do not authenticate under the key of the SDP", name, failed, len(pkts))
	}
	rc, rp := analyseTone(cipher, toneRate), analyseTone(plain, toneRate)
	t.Logf("%s: payload as captured: %v; decrypted: %v", name, rc, rp)
	// Ciphertext played as A-law is loud noise: no tone, no silence.
	if rc.Heard == 0 || rc.Purity > 0.1 {
		t.Errorf("%s: the payload as captured is not noise but %v: not encrypted?", name, rc)
	}
	if err := rp.hasTone(freq, heardAtLeast); err != nil {
		t.Errorf("%s: decrypted: %v", name, err)
	}
}

// checkRTPStream checks one direction of the core leg: plain RTP, 20 ms
// of A-law per packet, carrying the tone of freq Hz.
func checkRTPStream(t *testing.T, name string, pkts []capturedRTP, freq float64) {
	t.Helper()
	if len(pkts) < 50 {
		t.Errorf("%s: %d RTP packets captured, want a second's worth (50) at least", name, len(pkts))
		return
	}
	var x []float64
	wrong := 0
	for _, p := range pkts {
		// With an SRTP tag the payload would be longer.
		if p.pt != 8 || len(p.payload) != g711Frame {
			wrong++
			continue
		}
		x = append(x, alaw(p.payload)...)
	}
	if wrong > 0 {
		t.Errorf("%s: %d of %d packets are not 20 ms of A-law (payload type 8, %d bytes)", name, wrong, len(pkts), g711Frame)
	}
	rep := analyseTone(x, toneRate)
	t.Logf("%s: %v", name, rep)
	if err := rep.hasTone(freq, heardAtLeast); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}
