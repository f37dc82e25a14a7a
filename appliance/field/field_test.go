package field

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Path: "network.realms[1].sipPorts.tls", Msg: "port 70000 out of range 1-65535"}, "network.realms[1].sipPorts.tls: port 70000 out of range 1-65535"},
		{&Error{Msg: "required"}, "required"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestListErrAndError(t *testing.T) {
	var l List
	if err := l.Err(); err != nil {
		t.Fatalf("empty List.Err() = %v, want nil", err)
	}
	if err := (List{}).Err(); err != nil {
		t.Fatalf("List{}.Err() = %v, want nil", err)
	}
	l.Addf("a.b", "bad %d", 1)
	l.Addf("", "global %s", "x")
	err := l.Err()
	if err == nil {
		t.Fatal("non-empty List.Err() = nil")
	}
	if got, want := err.Error(), "a.b: bad 1\nglobal x"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := Paths(err), []string{"a.b", ""}; !slices.Equal(got, want) {
		t.Errorf("Paths = %q, want %q", got, want)
	}
	if l[0].Msg != "bad 1" {
		t.Errorf("Msg = %q, want %q", l[0].Msg, "bad 1")
	}
}

func TestJoin(t *testing.T) {
	tests := []struct{ parent, child, want string }{
		{"sbc", "mediaProfiles[0]", "sbc.mediaProfiles[0]"},
		{"codecs", "[1]", "codecs[1]"},
		{"", "child", "child"},
		{"parent", "", "parent"},
		{"", "", ""},
		{"a.b", "c.d", "a.b.c.d"},
	}
	for _, tt := range tests {
		if got := Join(tt.parent, tt.child); got != tt.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tt.parent, tt.child, got, tt.want)
		}
	}
}

func TestIndex(t *testing.T) {
	tests := []struct {
		path string
		i    int
		want string
	}{
		{"realms", 0, "realms[0]"},
		{"sbc.mediaProfiles", 12, "sbc.mediaProfiles[12]"},
		{"", 3, "[3]"},
	}
	for _, tt := range tests {
		if got := Index(tt.path, tt.i); got != tt.want {
			t.Errorf("Index(%q, %d) = %q, want %q", tt.path, tt.i, got, tt.want)
		}
	}
}

func TestMerge(t *testing.T) {
	nested := List{{Path: "name", Msg: "required"}, {Path: "[2]", Msg: "bad"}, {Path: "", Msg: "whole"}}
	tests := []struct {
		name      string
		prefix    string
		err       error
		wantPaths []string
		wantMsgs  []string
	}{
		{"nil", "x", nil, nil, nil},
		{"list", "sbc", nested, []string{"sbc.name", "sbc[2]", "sbc"}, []string{"required", "bad", "whole"}},
		{"wrapped list", "sbc", fmt.Errorf("ctx: %w", nested), []string{"sbc.name", "sbc[2]", "sbc"}, []string{"required", "bad", "whole"}},
		{"one error", "network", &Error{Path: "realms[0].vlan", Msg: "5000 out of range 0-4094"}, []string{"network.realms[0].vlan"}, []string{"5000 out of range 0-4094"}},
		{"wrapped one error", "network", fmt.Errorf("ctx: %w", &Error{Path: "routes", Msg: "m"}), []string{"network.routes"}, []string{"m"}},
		{"plain error", "cloudLink", errors.New("boom"), []string{"cloudLink"}, []string{"boom"}},
		{"empty prefix", "", nested, []string{"name", "[2]", ""}, []string{"required", "bad", "whole"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l List
			l.Merge(tt.prefix, tt.err)
			var paths, msgs []string
			for _, e := range l {
				paths = append(paths, e.Path)
				msgs = append(msgs, e.Msg)
			}
			if !slices.Equal(paths, tt.wantPaths) {
				t.Errorf("paths = %q, want %q", paths, tt.wantPaths)
			}
			if !slices.Equal(msgs, tt.wantMsgs) {
				t.Errorf("msgs = %q, want %q", msgs, tt.wantMsgs)
			}
		})
	}
	// Merging must not alias or modify the nested list.
	var l List
	l.Merge("p", nested)
	if nested[0].Path != "name" {
		t.Errorf("Merge modified the nested error: %q", nested[0].Path)
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"nil", nil, nil},
		{"plain", errors.New("x"), nil},
		{"one", &Error{Path: "a.b"}, []string{"a.b"}},
		{"list", List{{Path: "a"}, {Path: "b[1]"}}, []string{"a", "b[1]"}},
		{"wrapped list", fmt.Errorf("w: %w", List{{Path: "c"}}), []string{"c"}},
		{"wrapped one", fmt.Errorf("w: %w", &Error{Path: "d"}), []string{"d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Paths(tt.err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Paths = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestPort(t *testing.T) {
	tests := []struct {
		port    int
		off     bool
		wantErr bool
		wantMsg string
	}{
		{0, true, false, ""},
		{0, false, true, "port 0 out of range 1-65535"},
		{1, false, false, ""},
		{1, true, false, ""},
		{65535, false, false, ""},
		{65535, true, false, ""},
		{65536, false, true, "port 65536 out of range 1-65535"},
		{65536, true, true, "port 65536 out of range 1-65535 (0 = off)"},
		{-1, true, true, "port -1 out of range 1-65535 (0 = off)"},
		{-1, false, true, "port -1 out of range 1-65535"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/off=%v", tt.port, tt.off), func(t *testing.T) {
			var l List
			l.Port("p.port", tt.port, tt.off)
			if !tt.wantErr {
				if err := l.Err(); err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if len(l) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(l), l)
			}
			if l[0].Path != "p.port" || l[0].Msg != tt.wantMsg {
				t.Errorf("got %q %q, want %q %q", l[0].Path, l[0].Msg, "p.port", tt.wantMsg)
			}
		})
	}
}

func TestRange(t *testing.T) {
	tests := []struct {
		v, lo, hi int
		wantErr   bool
	}{
		{5, 5, 10, false},
		{10, 5, 10, false},
		{4, 5, 10, true},
		{11, 5, 10, true},
		{0, 0, 0, false},
		{-1, 0, 4094, true},
	}
	for _, tt := range tests {
		var l List
		l.Range("x.y", tt.v, tt.lo, tt.hi)
		if got := l.Err() != nil; got != tt.wantErr {
			t.Errorf("Range(%d, %d, %d) error = %v, want %v", tt.v, tt.lo, tt.hi, l.Err(), tt.wantErr)
			continue
		}
		if tt.wantErr {
			want := fmt.Sprintf("%d out of range %d-%d", tt.v, tt.lo, tt.hi)
			if l[0].Path != "x.y" || l[0].Msg != want {
				t.Errorf("got %q %q, want %q %q", l[0].Path, l[0].Msg, "x.y", want)
			}
		}
	}
}

func TestOneOf(t *testing.T) {
	tests := []struct {
		v       string
		wantErr bool
	}{
		{"udp", false},
		{"tls", false},
		{"UDP", true}, // case-sensitive
		{"", true},
		{"sctp", true},
	}
	for _, tt := range tests {
		var l List
		l.OneOf("transport", tt.v, "udp", "tcp", "tls")
		if got := l.Err() != nil; got != tt.wantErr {
			t.Errorf("OneOf(%q) error = %v, want error %v", tt.v, l.Err(), tt.wantErr)
			continue
		}
		if tt.wantErr {
			want := fmt.Sprintf("%q is not one of udp, tcp, tls", tt.v)
			if l[0].Path != "transport" || l[0].Msg != want {
				t.Errorf("got %q %q, want %q %q", l[0].Path, l[0].Msg, "transport", want)
			}
		}
	}
}

func TestRequired(t *testing.T) {
	tests := []struct {
		v       string
		wantErr bool
	}{
		{"x", false},
		{" x ", false},
		{"", true},
		{"   ", true},
		{"\t\n", true},
	}
	for _, tt := range tests {
		var l List
		l.Required("name", tt.v)
		if got := l.Err() != nil; got != tt.wantErr {
			t.Errorf("Required(%q) error = %v, want error %v", tt.v, l.Err(), tt.wantErr)
			continue
		}
		if tt.wantErr && (l[0].Path != "name" || l[0].Msg != "required") {
			t.Errorf("got %q %q, want name required", l[0].Path, l[0].Msg)
		}
	}
}

func TestCheckHost(t *testing.T) {
	tests := []struct {
		s     string
		valid bool
	}{
		{"10.180.0.10", true},
		{"::1", true},
		{"2001:db8::1", true},
		{"sbc01.example.com", true},
		{"sbc01.example.com.", true},
		{"localhost", true},
		{"a-b.c-d.example", true},
		{"", false},
		{".", false},
		{"a..b", false},
		{"-a.example.com", false},
		{"a-.example.com", false},
		{"a_b.example.com", false},
		{"exa mple.com", false},
		{"[::1]", false},
		{"host:5060", false},
		{"bücher.example", false},
		{strings.Repeat("a", 63) + ".com", true},
		{strings.Repeat("a", 64) + ".com", false},
		{"123.example.com", true},
	}
	for _, tt := range tests {
		err := CheckHost(tt.s)
		if (err == nil) != tt.valid {
			t.Errorf("CheckHost(%q) = %v, want valid=%v", tt.s, err, tt.valid)
		}
		var l List
		l.Host("h", tt.s)
		if (l.Err() == nil) != tt.valid {
			t.Errorf("Host(%q) = %v, want valid=%v", tt.s, l.Err(), tt.valid)
		} else if !tt.valid && l[0].Path != "h" {
			t.Errorf("Host(%q) path = %q, want h", tt.s, l[0].Path)
		}
	}
	if err := CheckHost(""); err == nil || err.Error() != "required" {
		t.Errorf("CheckHost(\"\") = %v, want required", err)
	}
}

// TestCheckHostRejectsDottedDecimal: RFC 1123 section 2.1 says a valid host
// name never has the dotted-decimal form #.#.#.#, since the top-level label
// is alphabetic. A mistyped IPv4 address such as "10.180.0.300" (for a PBX
// node or an E911 provider) must therefore be refused, not taken for a name.
func TestCheckHostRejectsDottedDecimal(t *testing.T) {
	for _, s := range []string{"10.180.0.300", "256.1.1.1", "1.2.3", "10.180.0.4."} {
		if err := CheckHost(s); err == nil {
			t.Errorf("CheckHost(%q) = nil, want an error (all-numeric top-level label)", s)
		}
	}
}

func TestCheckDNSNameLength(t *testing.T) {
	label := strings.Repeat("a", 63)
	// 4 labels of 63 + 3 dots = 255; build names of exactly 253 and 254.
	name253 := label + "." + label + "." + label + "." + strings.Repeat("b", 61)
	name254 := name253 + "b"
	if len(name253) != 253 || len(name254) != 254 {
		t.Fatalf("test setup: lengths %d %d", len(name253), len(name254))
	}
	tests := []struct {
		s     string
		valid bool
	}{
		{name253, true},
		{name253 + ".", true}, // trailing dot does not count
		{name254, false},
		{"example.com..", false},
	}
	for _, tt := range tests {
		if err := CheckDNSName(tt.s); (err == nil) != tt.valid {
			t.Errorf("CheckDNSName(len %d) = %v, want valid=%v", len(tt.s), err, tt.valid)
		}
	}
}

func TestCheckLabel(t *testing.T) {
	tests := []struct {
		s     string
		valid bool
	}{
		{"psigate", true},
		{"PSI-gate01", true},
		{"a", true},
		{strings.Repeat("x", 63), true},
		{strings.Repeat("x", 64), false},
		{"", false},
		{"psi.gate", false},
		{"-psigate", false},
		{"psigate-", false},
		{"psi_gate", false},
	}
	for _, tt := range tests {
		if err := CheckLabel(tt.s); (err == nil) != tt.valid {
			t.Errorf("CheckLabel(%q) = %v, want valid=%v", tt.s, err, tt.valid)
		}
	}
}

func TestUnique(t *testing.T) {
	tests := []struct {
		name      string
		member    string
		names     []string
		wantPaths []string
		wantMsgs  []string
	}{
		{"distinct", "name", []string{"a", "b", "c"}, nil, nil},
		{"empty skipped", "name", []string{"", "", "a"}, nil, nil},
		{"duplicate", "name", []string{"Zoom", "default", "Zoom"}, []string{"mediaProfiles[2].name"}, []string{`duplicate "Zoom" (also at mediaProfiles[0])`}},
		{"case-insensitive", "name", []string{"zoom", "ZOOM"}, []string{"mediaProfiles[1].name"}, []string{`duplicate "ZOOM" (also at mediaProfiles[0])`}},
		{"three times", "name", []string{"a", "a", "a"}, []string{"mediaProfiles[1].name", "mediaProfiles[2].name"}, []string{`duplicate "a" (also at mediaProfiles[0])`, `duplicate "a" (also at mediaProfiles[0])`}},
		{"no member", "", []string{"911", "911"}, []string{"mediaProfiles[1]"}, []string{`duplicate "911" (also at mediaProfiles[0])`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l List
			l.Unique("mediaProfiles", tt.member, tt.names)
			var paths, msgs []string
			for _, e := range l {
				paths = append(paths, e.Path)
				msgs = append(msgs, e.Msg)
			}
			if !slices.Equal(paths, tt.wantPaths) {
				t.Errorf("paths = %q, want %q", paths, tt.wantPaths)
			}
			if !slices.Equal(msgs, tt.wantMsgs) {
				t.Errorf("msgs = %q, want %q", msgs, tt.wantMsgs)
			}
		})
	}
}
