package sbctest

import (
	"context"
	"errors"
	"net"

	"github.com/emiago/sipgo"
)

// NoDNS gives a test's sipgo user agent a resolver that refuses every
// name lookup: a test sends nothing beyond loopback, and a SIP stack that
// falls back to the host in a Request-URI (a retransmission, a CANCEL)
// would otherwise ask the system's DNS server.
func NoDNS() sipgo.UserAgentOption {
	return sipgo.WithUserAgentDNSResolver(&net.Resolver{PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("sbctest: no DNS in tests")
		}})
}
