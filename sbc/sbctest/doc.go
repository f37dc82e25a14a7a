// Package sbctest runs real SIP peers for the SBC's tests, in the way
// net/http/httptest runs HTTP servers for handler tests. It is imported
// by _test.go files and by the demo (sbc/demo, RunKamailio), never by
// the appliance.
//
// StartKamailio runs a Kamailio registrar with digest authentication as the
// PBX behind the SBC: a private process on a loopback address and a free
// port, with its configuration, tables, FIFO and log under t.TempDir(),
// stopped by t.Cleanup. Tests drive it over SIP, stop and start it for
// failover, and read back what it holds (Locations) and what reached it
// (Requests).
//
// RegisterTLS registers many subscribers over their own TLS connections
// (digest authentication written out, connections kept open), for load
// tests of the SBC's TLS access realm: Debian's SIPp has no TLS.
//
// FindPeer finds any such program (kamailio, sipp, baresip) and
// BaresipModules baresip's modules. When a peer is not installed the test
// is skipped, unless the environment sets PSIGATE_REQUIRE_PEERS=1 (as
// .ci/run does), where it fails (PeerMissing). On Debian Kamailio comes
// with the package kamailio; every module used is in that package.
package sbctest
