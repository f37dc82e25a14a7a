// Package sysinfo reads the host's load, memory and disk figures from
// /proc and statfs, for the portal's dashboard.
package sysinfo

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Info is a snapshot of the host's resources.
type Info struct {
	CPUs        int     `json:"cpus"`
	Load1       float64 `json:"load1"` // 1-minute load average
	Load5       float64 `json:"load5"`
	MemTotal    uint64  `json:"memTotalBytes"`
	MemAvail    uint64  `json:"memAvailableBytes"`
	DiskTotal   uint64  `json:"diskTotalBytes"` // of the data directory's file system
	DiskFree    uint64  `json:"diskFreeBytes"`
	ProcessRSS  uint64  `json:"processRSSBytes"`
	Goroutines  int     `json:"goroutines"`
	HostUptimeS float64 `json:"hostUptimeSeconds"`
}

// Read gathers Info; dataDir selects the file system reported as disk.
// Figures that cannot be read stay zero and are named in the error.
func Read(proc, dataDir string) (Info, error) {
	info := Info{CPUs: runtime.NumCPU(), Goroutines: runtime.NumGoroutine()}
	var errs []string
	for _, read := range []func(string, *Info) error{readLoad, readUptime, readMem, readSelf} {
		if err := read(proc, &info); err != nil {
			errs = append(errs, err.Error())
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dataDir, &st); err != nil {
		errs = append(errs, fmt.Sprintf("statfs %s: %v", dataDir, err))
	} else {
		info.DiskTotal = st.Blocks * uint64(st.Bsize)
		info.DiskFree = st.Bavail * uint64(st.Bsize)
	}
	if len(errs) > 0 {
		return info, fmt.Errorf("sysinfo: %s", strings.Join(errs, "; "))
	}
	return info, nil
}

// fields reads a one-line file and splits it, requiring at least n fields.
func fields(path string, n int) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(b))
	if len(f) < n {
		return nil, fmt.Errorf("%s: unexpected %q", path, b)
	}
	return f, nil
}

func parseFloats(path string, in []string, out ...*float64) error {
	for i, p := range out {
		v, err := strconv.ParseFloat(in[i], 64)
		if err != nil {
			return fmt.Errorf("%s: field %d: %w", path, i+1, err)
		}
		*p = v
	}
	return nil
}

func readLoad(proc string, info *Info) error {
	path := proc + "/loadavg"
	f, err := fields(path, 2)
	if err != nil {
		return err
	}
	return parseFloats(path, f, &info.Load1, &info.Load5)
}

func readUptime(proc string, info *Info) error {
	path := proc + "/uptime"
	f, err := fields(path, 1)
	if err != nil {
		return err
	}
	return parseFloats(path, f, &info.HostUptimeS)
}

func readMem(proc string, info *Info) error {
	path := proc + "/meminfo"
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	want := map[string]*uint64{"MemTotal": &info.MemTotal, "MemAvailable": &info.MemAvail}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		dst := want[k]
		if !ok || dst == nil {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, k, err)
		}
		*dst = kb * 1024
		delete(want, k)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range []string{"MemTotal", "MemAvailable"} {
		if _, missing := want[k]; missing {
			return fmt.Errorf("%s: no %s", path, k)
		}
	}
	return nil
}

func readSelf(proc string, info *Info) error {
	path := proc + "/self/statm"
	f, err := fields(path, 2)
	if err != nil {
		return err
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return fmt.Errorf("%s: resident pages: %w", path, err)
	}
	info.ProcessRSS = pages * uint64(os.Getpagesize())
	return nil
}
