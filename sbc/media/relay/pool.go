package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrNoPorts is wrapped by the error of an allocation that found no free
// port pair in a realm's range.
var ErrNoPorts = errors.New("relay: no free media ports")

// Pool hands out RTP/RTCP port pairs (even port for RTP, the odd one above
// for RTCP, RFC 3550 section 11) from one realm's range, and takes a
// released pair back only after a drain period, so late packets of an
// ended call never reach the next one.
type Pool struct {
	realm    string
	bind     netip.Addr
	min, max int
	drain    time.Duration
	now      func() time.Time

	mu       sync.Mutex
	next     int               // where the next search starts
	inUse    map[int]bool      // RTP ports handed out
	draining map[int]time.Time // RTP port -> when it may be used again
}

// NewPool returns a pool of the ports min..max on bind (an address of the
// realm, or the unspecified address).
func NewPool(realm string, bind netip.Addr, min, max int, drain time.Duration, now func() time.Time) (*Pool, error) {
	if min%2 != 0 {
		min++
	}
	if min < 1024 || max > 65535 || max-min < 1 {
		return nil, fmt.Errorf("relay: realm %s: port range %d-%d holds no RTP/RTCP pair", realm, min, max)
	}
	if now == nil {
		now = time.Now
	}
	return &Pool{
		realm: realm, bind: bind, min: min, max: max, drain: drain, now: now, next: min,
		inUse: map[int]bool{}, draining: map[int]time.Time{},
	}, nil
}

// Ports is an allocated pair of sockets.
type Ports struct {
	RTP, RTCP *net.UDPConn
	Port      int // the RTP port; RTCP is Port+1
	Addr      netip.Addr
	pool      *Pool
	once      sync.Once
}

// Size is the number of pairs in the range.
func (p *Pool) Size() int { return (p.max - p.min + 1) / 2 }

// Free is the number of pairs neither in use nor draining.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	return p.Size() - len(p.inUse) - len(p.draining)
}

func (p *Pool) expireLocked() {
	now := p.now()
	for port, until := range p.draining {
		if !now.Before(until) {
			delete(p.draining, port)
		}
	}
}

// Alloc binds the next free pair. Pairs another program holds are
// skipped.
func (p *Pool) Alloc() (*Ports, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	for range p.Size() {
		port := p.next
		p.next += 2
		if p.next+1 > p.max {
			p.next = p.min
		}
		if p.inUse[port] {
			continue
		}
		if _, busy := p.draining[port]; busy {
			continue
		}
		ports, err := p.bindPair(port)
		if err != nil {
			continue // taken by someone else; try the next
		}
		p.inUse[port] = true
		return ports, nil
	}
	return nil, fmt.Errorf("%w in realm %s (%d-%d: %d in use, %d draining)", ErrNoPorts, p.realm, p.min, p.max, len(p.inUse), len(p.draining))
}

func (p *Pool) bindPair(port int) (*Ports, error) {
	rtp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.bind, uint16(port))))
	if err != nil {
		return nil, err
	}
	rtcp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.bind, uint16(port+1))))
	if err != nil {
		rtp.Close()
		return nil, err
	}
	return &Ports{RTP: rtp, RTCP: rtcp, Port: port, Addr: p.bind, pool: p}, nil
}

// Release closes the sockets and returns the pair to the pool after the
// drain period. Releasing twice is harmless.
func (ps *Ports) Release() {
	ps.once.Do(func() {
		ps.RTP.Close()
		ps.RTCP.Close()
		p := ps.pool
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.inUse, ps.Port)
		if p.drain > 0 {
			p.draining[ps.Port] = p.now().Add(p.drain)
		}
	})
}
