package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// TestMain lets the tests run main() in a child process: the test binary
// re-executes itself with benchfmtRunMain set.
func TestMain(m *testing.M) {
	if os.Getenv(benchfmtRunMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const benchfmtRunMain = "BENCHFMT_TEST_RUN_MAIN"

// runMain runs main with stdin and returns its stdout, stderr and exit
// code.
func runMain(t *testing.T, stdin string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	// atexit_sleep_ms: under -race the child would otherwise wait 1s
	// before exiting.
	cmd.Env = append(os.Environ(), benchfmtRunMain+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running main: %v", err)
	}
	return o.String(), e.String(), code
}

// realOutput is `go test -run '^$' -bench . -benchmem` output, as the
// Makefile's bench target produces it.
const realOutput = `goos: linux
goarch: amd64
pkg: github.com/psigate/psigate/appliance/store
cpu: AMD EPYC 7763 64-Core Processor                
BenchmarkStoreApply-2            	    1234	    912345 ns/op	   45678 B/op	     321 allocs/op
BenchmarkStoreApplyReference-2   	    3000	    304115 ns/op	   12345 B/op	     100 allocs/op
BenchmarkConfigValidate-2        	  123456	      9876 ns/op	       0 B/op	       0 allocs/op
BenchmarkX/size=10-2             	 1000000	      1052 ns/op	      64 B/op	       1 allocs/op
BenchmarkThroughput              	     500	   2000000.5 ns/op	 12.50 MB/s	   3.000 widgets/op
PASS
ok  	github.com/psigate/psigate/appliance/store	5.123s
`

type flat struct {
	name  string
	order []string
	vals  []float64
}

func flatten(rs []result) []flat {
	out := []flat{}
	for _, r := range rs {
		f := flat{name: r.name, order: r.order}
		if len(r.values) != len(r.order) {
			f.name += " (values/order mismatch)"
		}
		for _, u := range r.order {
			f.vals = append(f.vals, r.values[u])
		}
		out = append(out, f)
	}
	return out
}

func TestParseRealOutput(t *testing.T) {
	rs, err := parse(strings.NewReader(realOutput))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	mem := []string{"ns/op", "B/op", "allocs/op"}
	want := []flat{
		{"store_apply", mem, []float64{912345, 45678, 321}},
		{"store_apply_reference", mem, []float64{304115, 12345, 100}},
		{"config_validate", mem, []float64{9876, 0, 0}},
		{"x/size=10", mem, []float64{1052, 64, 1}},
		{"throughput", []string{"ns/op", "MB/s", "widgets/op"}, []float64{2000000.5, 12.5, 3}},
	}
	if got := flatten(rs); !reflect.DeepEqual(got, want) {
		t.Errorf("parse =\n%v\nwant\n%v", got, want)
	}
}

func TestParseFail(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantErr  string
		wantN    int // results before the failure
	}{
		{"FAIL line", "BenchmarkA-2 10 5 ns/op\nFAIL\tgithub.com/x/y\t0.01s\n", "benchmark failed: FAIL\tgithub.com/x/y\t0.01s", 1},
		{"bare FAIL", "BenchmarkA-2 10 5 ns/op\nBenchmarkB-2 10 6 ns/op\nFAIL\n", "benchmark failed: FAIL", 2},
		{"--- FAIL", "goos: linux\n--- FAIL: BenchmarkB-2\n    b_test.go:9: boom\nFAIL\n", "benchmark failed: --- FAIL: BenchmarkB-2", 0},
		{"stops at failure", "FAIL\nBenchmarkA-2 10 5 ns/op\n", "benchmark failed: FAIL", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := parse(strings.NewReader(tc.in))
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("parse error = %v, want %q", err, tc.wantErr)
			}
			if len(rs) != tc.wantN {
				t.Errorf("parse returned %d results, want %d: %v", len(rs), tc.wantN, flatten(rs))
			}
		})
	}
}

func TestParseGarbage(t *testing.T) {
	for _, in := range []string{
		"",
		"hello world\n",
		"PASS\nok  \tgithub.com/x\t0.1s\n",
		"goos: linux\ngoarch: amd64\npkg: x\ncpu: y\n",
		"Benchmark\n",                 // no name
		"BenchmarkFoo-2\n",            // no iterations
		"BenchmarkFoo-2 many 5 ns/op", // non-numeric iterations
		"  BenchmarkFoo-2 10 5 ns/op", // indented: not a result line
		"--- BENCH: BenchmarkFoo-2\n",
		"\x00\xff\xfe binary\n",
	} {
		rs, err := parse(strings.NewReader(in))
		if err != nil || len(rs) != 0 {
			t.Errorf("parse(%q) = %v, %v; want no results, no error", in, flatten(rs), err)
		}
	}
}

// Lines that look like results but carry broken figures: no panic, the
// parsable pairs are kept.
func TestParseMalformedResultLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []flat
	}{
		{"BenchmarkFoo-2 10 \n", []flat{{"foo", nil, nil}}},
		{"BenchmarkFoo-2 10 5\n", []flat{{"foo", nil, nil}}},
		{"BenchmarkFoo-2 10 ns/op 5\n", []flat{{"foo", nil, nil}}},
		{"BenchmarkFoo-2 10 x ns/op 7 B/op\n", []flat{{"foo", []string{"B/op"}, []float64{7}}}},
		{"BenchmarkFoo-2 10 5 ns/op 7\n", []flat{{"foo", []string{"ns/op"}, []float64{5}}}},
		{"BenchmarkFoo-2 99999999999999999999999 1e400 ns/op\n", []flat{{"foo", nil, nil}}},
		{"BenchmarkFoo 10 -3 ns/op\n", []flat{{"foo", []string{"ns/op"}, []float64{-3}}}},
		{"BenchmarkÄpfel-2 10 5 ns/op\n", []flat{{"äpfel", []string{"ns/op"}, []float64{5}}}},
	} {
		rs, err := parse(strings.NewReader(tc.in))
		if err != nil {
			t.Errorf("parse(%q): %v", tc.in, err)
			continue
		}
		if got := flatten(rs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	// A line longer than the scanner's buffer is an error, not a panic.
	long := "BenchmarkFoo-2 10 5 ns/op " + strings.Repeat("x", 70000) + "\n"
	if _, err := parse(strings.NewReader(long)); err == nil {
		t.Error("parse of a 70 kB line: no error")
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"StoreApply":             "store_apply",
		"StoreApply/size=10":     "store_apply/size=10",
		"StoreApply/SizeTen":     "store_apply/size_ten",
		"StoreApplyReference":    "store_apply_reference",
		"Already_snake":          "already_snake",
		"Mixed_Case":             "mixed_case",
		"x":                      "x",
		"X":                      "x",
		"":                       "",
		"HTTP":                   "http",
		"RelayRTPToSRTP":         "relay_rtp_to_srtp",
		"ParseSDPOffer":          "parse_sdp_offer",
		"ConfigValidate/Deep/A1": "config_validate/deep/a1",
		"größeWert":              "größe_wert",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMainOutput(t *testing.T) {
	stdout, stderr, code := runMain(t, realOutput)
	want := `bench store_apply 912345 ns/op
bench store_apply 45678 B/op
bench store_apply 321 allocs/op
bench store_apply_reference 304115 ns/op
bench store_apply_reference 12345 B/op
bench store_apply_reference 100 allocs/op
bench config_validate 9876 ns/op
bench config_validate 0 B/op
bench config_validate 0 allocs/op
bench x/size=10 1052 ns/op
bench x/size=10 64 B/op
bench x/size=10 1 allocs/op
bench throughput 2000000.5 ns/op
bench throughput 12.5 MB/s
bench throughput 3 widgets/op
bench store_apply_ratio 3.00 x
`
	if code != 0 || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	if stdout != want {
		t.Errorf("stdout =\n%s\nwant\n%s", stdout, want)
	}
}

func TestMainRatios(t *testing.T) {
	in := `BenchmarkBReference-4 10 400 ns/op
BenchmarkA-4 10 150 ns/op
BenchmarkB-4 10 100 ns/op
BenchmarkAReference-4 10 100 ns/op
BenchmarkZero-4 10 50 ns/op
BenchmarkZeroReference-4 10 0 ns/op
BenchmarkNoNs-4 10 50 ns/op
BenchmarkNoNsReference-4 10 8 B/op
BenchmarkLonely-4 10 1 ns/op
`
	stdout, _, code := runMain(t, in)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var ratios []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, "_ratio ") {
			ratios = append(ratios, l)
		}
	}
	want := []string{"bench a_ratio 1.50 x", "bench b_ratio 0.25 x"}
	if !reflect.DeepEqual(ratios, want) {
		t.Errorf("ratio lines = %q, want %q", ratios, want)
	}
}

func TestMainFail(t *testing.T) {
	in := "BenchmarkA-2 10 5 ns/op\nBenchmarkAReference-2 10 10 ns/op\n--- FAIL: BenchmarkB-2\nFAIL\n"
	stdout, stderr, code := runMain(t, in)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	// What was measured before the failure is still printed.
	wantOut := "bench a 5 ns/op\nbench a_reference 10 ns/op\nbench a_ratio 0.50 x\n"
	if stdout != wantOut {
		t.Errorf("stdout = %q, want %q", stdout, wantOut)
	}
	if want := "benchfmt: benchmark failed: --- FAIL: BenchmarkB-2\n"; stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
}

func TestMainNoResults(t *testing.T) {
	stdout, stderr, code := runMain(t, "PASS\nok  \tgithub.com/x\t0.1s\n")
	if code != 1 || stdout != "" || stderr != "benchfmt: no benchmark results on stdin\n" {
		t.Errorf("main = exit %d, stdout %q, stderr %q; want exit 1, no stdout, a 'no benchmark results' error", code, stdout, stderr)
	}
}
