package vm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psigate/psigate/gokrazy/builder"
	"github.com/psigate/psigate/gokrazy/vm"
)

// The image benchmarks (make bench-image) measure what a newcomer waits
// for: building the amd64 image with a warm build cache, next to go build
// of the same programs alone; and booting it with the kernel loaded
// directly until the portal answers, next to the same boot until
// gokrazy's own page answers (the appliance's share of the boot).

func benchImages(b *testing.B) (root string, o builder.Options) {
	b.Helper()
	if err := vm.Tools(vm.Direct); err != nil {
		b.Skipf("image benchmark skipped: %v", err)
	}
	root = moduleRoot(b)
	dir := b.TempDir()
	password, key, pubPEM, err := secrets(dir)
	if err != nil {
		b.Fatal(err)
	}
	o = options(root, filepath.Join(root, "gokrazy", "instances", "amd64", "config.json"), filepath.Join(dir, "out"), "1.0.0", password, key, pubPEM)
	o.BuildTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	// Warm the build cache, as a second `make image` finds it.
	if _, err := builder.Build(context.Background(), o); err != nil {
		b.Fatal(err)
	}
	return root, o
}

func BenchmarkImageBuild(b *testing.B) {
	_, o := benchImages(b)
	var took time.Duration
	var r *builder.Result
	for b.Loop() {
		start := time.Now()
		var err error
		if r, err = builder.Build(context.Background(), o); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "s/build")
	for _, p := range []struct{ name, unit string }{{"boot", "MB-boot"}, {"root", "MB-root"}, {"bundle", "MB-bundle"}} {
		b.ReportMetric(float64(r.Sizes[p.name])/1e6, p.unit)
	}
	// The disk image is sparse: what it takes on the build machine, and
	// what a compressed download of it would roughly be.
	if fi, err := os.Stat(r.Disk); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			b.ReportMetric(float64(st.Blocks*512)/1e6, "MB-disk-allocated")
		}
	}
}

// BenchmarkImageBuildReference is go build of the image's programs for
// the target, with the same flags and a warm cache: what the builder
// adds on top of compiling.
func BenchmarkImageBuildReference(b *testing.B) {
	root, _ := benchImages(b)
	out := b.TempDir()
	var took time.Duration
	for b.Loop() {
		start := time.Now()
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", out+"/", "-tags", "gokrazy,netgo,osusergo", "-ldflags", "-s -w",
			"github.com/psigate/psigate/appliance", "github.com/psigate/psigate/gokrazy/cmd/bootguard",
			"github.com/gokrazy/gokrazy/cmd/dhcp", "github.com/gokrazy/gokrazy/cmd/ntp", "github.com/gokrazy/gokrazy/cmd/randomd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOAMD64=v1")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, msg)
		}
		took += time.Since(start)
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "s/build")
}

// bootUntil boots the built disk with the kernel loaded directly and
// returns the seconds from QEMU's start until ready says so.
func bootUntil(b *testing.B, r *builder.Result, ready func(v *vm.VM) bool) float64 {
	b.Helper()
	disk := filepath.Join(b.TempDir(), "disk.img")
	if msg, err := exec.Command("cp", "--sparse=always", r.Disk, disk).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v %s", err, msg)
	}
	cmdline, err := os.ReadFile(r.Cmdline)
	if err != nil {
		b.Fatal(err)
	}
	v, err := vm.Start(context.Background(), vm.Options{Disk: disk, Boot: vm.Direct, Kernel: r.Kernel,
		Append: strings.TrimSpace(string(cmdline)), Serial: filepath.Join(b.TempDir(), "serial.log"),
		Forward: map[int]int{portalPort: 0, gokrazyPort: 0}, Timeout: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Stop()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := v.Poll(ctx, "ready", func() bool { return ready(v) }); err != nil {
		b.Fatal(err)
	}
	return time.Since(start).Seconds()
}

func benchBoot(b *testing.B, ready func(v *vm.VM) bool) {
	_, o := benchImages(b)
	r, err := builder.Build(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for b.Loop() {
		total += bootUntil(b, r, ready)
	}
	b.ReportMetric(total/float64(b.N), "s/ready")
}

// BenchmarkImageBoot is QEMU start to the portal's /healthz answering 200.
func BenchmarkImageBoot(b *testing.B) {
	benchBoot(b, func(v *vm.VM) bool {
		code, _, err := newPortal(v).do("GET", "/healthz", nil, "", nil)
		return err == nil && code == 200
	})
}

// BenchmarkImageBootReference is QEMU start to gokrazy's own page
// answering (before the appliance runs, or while it starts).
func BenchmarkImageBootReference(b *testing.B) {
	benchBoot(b, func(v *vm.VM) bool {
		code, _, err := gokrazyGet(v, "/", "")
		return err == nil && code == 401
	})
}
