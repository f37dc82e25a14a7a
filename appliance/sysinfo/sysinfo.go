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
	if err := readLoad(proc, &info); err != nil {
		errs = append(errs, err.Error())
	}
	if err := readMem(proc, &info); err != nil {
		errs = append(errs, err.Error())
	}
	if err := readSelf(proc, &info); err != nil {
		errs = append(errs, err.Error())
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

func readLoad(proc string, info *Info) error {
	b, err := os.ReadFile(proc + "/loadavg")
	if err != nil {
		return err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return fmt.Errorf("%s/loadavg: unexpected %q", proc, b)
	}
	info.Load1, _ = strconv.ParseFloat(f[0], 64)
	info.Load5, _ = strconv.ParseFloat(f[1], 64)
	if b, err := os.ReadFile(proc + "/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			info.HostUptimeS, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return nil
}

func readMem(proc string, info *Info) error {
	f, err := os.Open(proc + "/meminfo")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "MemTotal":
			info.MemTotal = kb * 1024
		case "MemAvailable":
			info.MemAvail = kb * 1024
		}
	}
	return sc.Err()
}

func readSelf(proc string, info *Info) error {
	b, err := os.ReadFile(proc + "/self/statm")
	if err != nil {
		return err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return fmt.Errorf("%s/self/statm: unexpected %q", proc, b)
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	info.ProcessRSS = pages * uint64(os.Getpagesize())
	return nil
}
