package sbctest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// RunKamailio starts the Kamailio of StartKamailio for a program rather
// than a test, such as the demo (sbc/demo): the same configuration,
// users and readiness checks, but errors are returned, and the caller
// owns the process (Stop) and dir. bin is the kamailio program (Debian
// package kamailio); dir is an empty directory for its configuration,
// tables, FIFO and log, short enough for Kamailio's FIFO paths (about
// 100 bytes). With opts.Port 0 it picks a free port, and another if that
// one is taken before Kamailio binds it.
func RunKamailio(bin, dir string, opts KamailioOptions) (*Kamailio, error) {
	listen, err := checkRunOptions(dir, &opts)
	if err != nil {
		return nil, err
	}
	k := &Kamailio{
		bin:      bin,
		dir:      dir,
		cfgPath:  filepath.Join(dir, "kamailio.cfg"),
		logPath:  filepath.Join(dir, "kamailio.log"),
		fifoPath: filepath.Join(dir, "run", "rpc.fifo"),
		replyDir: filepath.Join(dir, "run"),
		calls:    opts.Calls,
		trusted:  slices.Clone(opts.Trusted),
	}
	if len(k.replyDir)+1+len("r0000000000") >= rpcMaxPath {
		return nil, fmt.Errorf("sbctest: directory %q is too long for Kamailio's FIFO paths (%d bytes at most)", dir, rpcMaxPath-len("/run/r0000000000"))
	}
	for _, d := range []string{filepath.Join(dir, "run"), filepath.Join(dir, "db")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("sbctest: %w", err)
		}
	}
	if err := k.writeTables(opts.Users); err != nil {
		return nil, fmt.Errorf("sbctest: %w", err)
	}
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = FreePort(listen); err != nil {
				return nil, err
			}
		}
		k.Addr = netip.AddrPortFrom(listen, uint16(port))
		k.mu.Lock()
		err := k.startLocked()
		k.mu.Unlock()
		if err == nil {
			return k, nil
		}
		if opts.Port == 0 && errors.Is(err, errAddrInUse) && attempt < 5 {
			continue
		}
		return nil, fmt.Errorf("sbctest: Kamailio did not start on %s: %w", k.Addr, err)
	}
}

// checkRunOptions applies StartKamailio's rules to the options of
// RunKamailio and returns the address to listen on.
func checkRunOptions(dir string, opts *KamailioOptions) (netip.Addr, error) {
	listen := opts.Listen
	if !listen.IsValid() {
		listen = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	var errs []error
	if !listen.IsLoopback() {
		errs = append(errs, fmt.Errorf("Kamailio listens on loopback only, not %s", listen))
	}
	if opts.Port < 0 || opts.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", opts.Port))
	}
	for user, pass := range opts.Users {
		errs = append(errs, checkUser(user, pass))
	}
	for _, a := range opts.Trusted {
		if !a.IsLoopback() {
			errs = append(errs, fmt.Errorf("trusted address %s is not on loopback", a))
		}
	}
	if len(opts.Trusted) > 0 && !opts.Calls {
		errs = append(errs, errors.New("trusted addresses are for calls, and Calls is not set"))
	}
	if strings.ContainsAny(dir, "\"\\\n") {
		errs = append(errs, fmt.Errorf("directory %q has characters Kamailio's configuration cannot quote", dir))
	}
	if err := errors.Join(errs...); err != nil {
		return listen, fmt.Errorf("sbctest: %w", err)
	}
	return listen, nil
}

// FreePort returns a port that is free on addr for both TCP and UDP (a
// SIP listener takes both).
func FreePort(addr netip.Addr) (int, error) {
	for range 20 {
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		if err != nil {
			return 0, fmt.Errorf("sbctest: finding a free port on %s: %w", addr, err)
		}
		port := l.Addr().(*net.TCPAddr).AddrPort().Port()
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return int(port), nil
	}
	return 0, fmt.Errorf("sbctest: found no port free for both TCP and UDP on %s", addr)
}

// LocationTable is Locations for a program: Kamailio's location table as
// it is now, or why it could not be read.
func (k *Kamailio) LocationTable() ([]Location, error) {
	raw, err := k.rpc("ul.dump", rpcTimeout)
	if err != nil {
		return nil, fmt.Errorf("sbctest: reading Kamailio's location table: %w", err)
	}
	return parseULDump(raw, time.Now())
}

// LogTail is the end of Kamailio's log, n lines at most, without the
// lines this kit logs for every request: what to show when something
// went wrong.
func (k *Kamailio) LogTail(n int) string { return k.logTail(n) }
