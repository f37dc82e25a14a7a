// Command benchfmt turns `go test -bench` output on stdin into one line
// per figure, "bench <name> <value> <unit>", and a ratio line
// "bench <name>_ratio <value> x" (Foo's own figure, such as pps or calls,
// over the reference's where both report one, else Foo's time per
// operation over the reference's) for every benchmark Foo that has a
// reference FooReference (or Foo/x a FooReference/x) measured in the same run (the machines are
// shared and noisy, so only same-run ratios compare).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// line matches "BenchmarkApply-2   1234   5678 ns/op   90 B/op ...".
var line = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

type result struct {
	name   string
	values map[string]float64 // unit -> value
	order  []string
}

func parse(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			if strings.HasPrefix(sc.Text(), "FAIL") || strings.HasPrefix(sc.Text(), "--- FAIL") {
				return out, fmt.Errorf("benchmark failed: %s", sc.Text())
			}
			continue
		}
		res := result{name: snake(m[1]), values: map[string]float64{}}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			res.values[f[i+1]] = v
			res.order = append(res.order, f[i+1])
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// snake turns "StoreApply/size=10" into "store_apply/size=10" and keeps
// acronyms whole: "RelayRTPToSRTP" becomes "relay_rtp_to_srtp".
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && r[i-1] != '/' && r[i-1] != '_' {
			prevLower := !unicode.IsUpper(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// referenceOf names the reference of a benchmark: "foo" -> "foo_reference",
// "foo/size=10" -> "foo_reference/size=10".
func referenceOf(name string) string {
	base, sub, found := strings.Cut(name, "/")
	if found {
		return base + "_reference/" + sub
	}
	return base + "_reference"
}

// ratio compares a result with its reference: by the first figure of
// its own unit that both report (such as pps or calls, where higher is
// better), else by time per operation (lower is better).
func ratio(r, ref result) (float64, bool) {
	for _, u := range r.order {
		switch u {
		case "ns/op", "B/op", "allocs/op", "MB/s":
			continue
		}
		if ref.values[u] > 0 {
			return r.values[u] / ref.values[u], true
		}
	}
	if ref.values["ns/op"] == 0 {
		return 0, false
	}
	return r.values["ns/op"] / ref.values["ns/op"], true
}

func main() {
	results, err := parse(os.Stdin)
	byName := map[string]result{}
	for _, r := range results {
		byName[r.name] = r
		for _, u := range r.order {
			fmt.Printf("bench %s %s %s\n", r.name, strconv.FormatFloat(r.values[u], 'f', -1, 64), u)
		}
	}
	for _, r := range results {
		ref, ok := byName[referenceOf(r.name)]
		if !ok {
			continue
		}
		if v, ok := ratio(r, ref); ok {
			fmt.Printf("bench %s_ratio %.2f x\n", r.name, v)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchfmt:", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "benchfmt: no benchmark results on stdin")
		os.Exit(1)
	}
}
