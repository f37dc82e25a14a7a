package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc"
)

// Media ports of the demo, below the kernel's ephemeral range (32768 and
// up) and apart from the ranges the tests use: the SBC's access realm
// 22000-22199 and core realm 22200-22399, the Zoom client's RTP
// 22400-22499 and the PBX phone's 22500-22599.
var (
	accessMedia = netcfg.PortRange{Min: 22000, Max: 22199}
	coreMedia   = netcfg.PortRange{Min: 22200, Max: 22399}
)

const zoomRTPPorts, phoneRTPPorts = "22400-22499", "22500-22599"

// sipSetup is what the demo asks of the appliance's SIP side.
type sipSetup struct {
	access netip.AddrPort // the access realm's TLS listener: where Zoom clients register
	core   netip.AddrPort // the core realm's TCP listener: psigate towards the PBX
	pbx    netip.AddrPort // the PBX node (Kamailio), over TCP
}

// configure edits the candidate as an admin would in the portal and
// applies it: both realms on loopback (TLS only on the access realm, TCP
// only on the core realm), Kamailio as the one PBX node, and baresip's
// User-Agent on the "Zoom" media profile (SRTP), as a Zoom client's
// "ZoomPbxPhone" is by default. It returns the revision now running.
func configure(ctx context.Context, a *api, s sipSetup) (uint64, error) {
	var c config.Config
	if err := a.do(ctx, "GET", "/config/candidate", nil, &c, http.StatusOK); err != nil {
		return 0, err
	}
	if err := setRealms(&c.Network, s); err != nil {
		return 0, err
	}
	c.SBC.SIPServer.NodeGroups = []sbc.NodeGroup{{Name: "PBX", Nodes: []sbc.Node{{
		Name: "kamailio", Priority: 1, Address: s.pbx.Addr().String(), Transport: sbc.TransportTCP, Port: int(s.pbx.Port()),
	}}}}
	c.SBC.SIPServer.Keepalive.IntervalSeconds = 5
	c.SBC.UserAgentProfiles = slices.DeleteFunc(c.SBC.UserAgentProfiles, func(p sbc.UserAgentProfile) bool { return p.UserAgent == "baresip" })
	c.SBC.UserAgentProfiles = append([]sbc.UserAgentProfile{{UserAgent: "baresip", MediaProfile: "Zoom"}}, c.SBC.UserAgentProfiles...)
	if err := a.do(ctx, "PUT", "/config/candidate", c, nil, http.StatusOK); err != nil {
		return 0, err
	}
	var applied struct {
		Revision struct {
			Number uint64 `json:"number"`
		} `json:"revision"`
	}
	err := a.do(ctx, "POST", "/config/apply", map[string]any{"comment": "make demo: SIP on loopback, Kamailio as the PBX"}, &applied, http.StatusOK)
	return applied.Revision.Number, err
}

// setRealms puts the core and the first access realm on loopback with the
// demo's ports, and closes the SIP ports of any other realm.
func setRealms(n *netcfg.Config, s sipSetup) error {
	var core, access bool
	for i := range n.Realms {
		r := &n.Realms[i]
		r.SIPPorts = netcfg.SIPPorts{}
		switch {
		case r.Role == netcfg.RoleCore && !core:
			r.SIPPorts.TCP, r.MediaPorts, core = int(s.core.Port()), coreMedia, true
		case r.Role == netcfg.RoleAccess && !access:
			r.SIPPorts.TLS, r.MediaPorts, access = int(s.access.Port()), accessMedia, true
		default:
			continue
		}
		r.Interface, r.VLAN, r.DHCP, r.AdvertisedAddress = "lo", 0, false, ""
		r.Addresses = []string{netip.PrefixFrom(s.core.Addr(), 8).String()}
	}
	if !core || !access {
		return errors.New("the candidate has no core or no access realm")
	}
	return nil
}

// waitSIP waits until the access realm's TLS listener completes a
// handshake with the appliance's certificate (the portal's): the SBC
// runs the applied configuration.
func waitSIP(ctx context.Context, addr netip.AddrPort, cert *x509.Certificate) error {
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	var last error
	err := poll(ctx, 15*time.Second, func() (bool, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{RootCAs: roots, ServerName: addr.Addr().String()}}
		c, err := d.DialContext(ctx, "tcp", addr.String())
		if err != nil {
			last = err
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("the access realm's TLS listener on %s: %w", addr, last)
	}
	return err
}

// freePort is a TCP port free on addr now.
func freePort(addr netip.Addr) (int, error) {
	l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
