package builder

import (
	"crypto/ed25519"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The instance configurations in the repository parse, validate and say
// what they build.
func TestInstances(t *testing.T) {
	for _, tc := range []struct{ name, arch, target, kernel, firmware, console string }{
		{"amd64", "amd64", "amd64", "github.com/gokrazy/kernel.amd64", "", "ttyS0,115200"},
		{"rpi", "arm64", "rpi", "github.com/gokrazy/kernel.rpi", "github.com/gokrazy/firmware", "serial0,115200"},
	} {
		c, err := LoadConfig(filepath.Join("..", "instances", tc.name, "config.json"))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Arch() != tc.arch || c.Target() != tc.target || c.Kernel() != tc.kernel || c.Firmware() != tc.firmware || c.SerialConsoleArg() != tc.console {
			t.Errorf("%s: arch %s target %s kernel %s firmware %q console %s", tc.name, c.Arch(), c.Target(), c.Kernel(), c.Firmware(), c.SerialConsoleArg())
		}
		if c.HTTPPort() != "8080" {
			t.Errorf("%s: gokrazy's page on %s, want 8080 (the portal has 443)", tc.name, c.HTTPPort())
		}
		if got := c.Basename("github.com/psigate/psigate/appliance"); got != "appliance" {
			t.Errorf("basename %q", got)
		}
		for _, p := range c.SystemPackages() {
			if strings.HasSuffix(p, "heartbeat") {
				t.Errorf("%s: heartbeat reports to a server outside the site; leave it out", tc.name)
			}
		}
	}
}

func TestParseConfigRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"not json":         {`{`, "config:"},
		"unknown field":    {`{"Hostname":"a","Packages":["x/y"],"Pakages":[]}`, "unknown field"},
		"trailing":         {`{"Hostname":"a","Packages":["x/y"]} {}`, "after the JSON"},
		"bad hostname":     {`{"Hostname":"a b","Packages":["x/y"]}`, "Hostname"},
		"no packages":      {`{"Hostname":"a"}`, "Packages is empty"},
		"bad arch":         {`{"Hostname":"a","Packages":["x/y"],"Environment":["GOARCH=mips"]}`, "GOARCH=mips"},
		"bad env":          {`{"Hostname":"a","Packages":["x/y"],"Environment":["GOARCH"]}`, "KEY=value"},
		"bad import":       {`{"Hostname":"a","Packages":["../etc"]}`, "not an import path"},
		"init":             {`{"Hostname":"a","Packages":["x/init"]}`, "cannot be a program name"},
		"duplicate base":   {`{"Hostname":"a","Packages":["x/app","y/app"]}`, "both install as"},
		"orphan config":    {`{"Hostname":"a","Packages":["x/y"],"PackageConfig":{"z/w":{}}}`, "not in Packages"},
		"file under perm":  {`{"Hostname":"a","Packages":["x/y"],"PackageConfig":{"x/y":{"ExtraFileContents":{"/perm/x":"1"}}}}`, "/perm"},
		"relative file":    {`{"Hostname":"a","Packages":["x/y"],"PackageConfig":{"x/y":{"ExtraFilePaths":{"etc/x":"a"}}}}`, "clean absolute"},
		"bad port":         {`{"Hostname":"a","Packages":["x/y"],"Update":{"HTTPPort":"80a"}}`, "not a port"},
		"newline in args":  {`{"Hostname":"a","Packages":["x/y"],"KernelExtraArgs":["quiet\nlinux /evil"]}`, "KernelExtraArgs"},
		"second root":      {`{"Hostname":"a","Packages":["x/y"],"KernelExtraArgs":["root=/dev/sda3"]}`, "not root="},
		"console space":    {`{"Hostname":"a","Packages":["x/y"],"SerialConsole":"ttyS0 init=/bin/sh"}`, "SerialConsole"},
		"bootloader lines": {`{"Hostname":"a","Packages":["x/y"],"BootloaderExtraLines":["a\nb"]}`, "one line"},
		"password in file": {`{"Hostname":"a","Packages":["x/y"],"Update":{"HTTPPassword":"secret"}}`, "keep the password out"},
	} {
		_, err := ParseConfig([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func TestBasename(t *testing.T) {
	c := &Config{PackageConfig: map[string]PackageConfig{"a/b/c": {Basename: "cc"}}}
	for pkg, want := range map[string]string{"a/b/c": "cc", "x/tool/v2": "tool", "x/v2": "x", "y": "y"} {
		if got := c.Basename(pkg); got != want {
			t.Errorf("Basename(%s) = %s, want %s", pkg, got, want)
		}
	}
}

// cmdline puts root= in the PARTUUID form gokrazy's updater rewrites,
// replaces the fixed root delay, and pads for in-place rewrites.
func TestCmdline(t *testing.T) {
	amd, err := LoadConfig(filepath.Join("..", "instances", "amd64", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	b := &build{cfg: amd}
	got := b.cmdline("root=/dev/sda2 ro init=/gokrazy/init panic=10 oops=panic rootdelay=10 pci=nommconf\n")
	want := "console=tty1 console=ttyS0,115200 root=PARTUUID=60c24cc1-f3f9-427a-8199-"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "0001/PARTNROFF=1 ro init=/gokrazy/init") {
		t.Errorf("cmdline %q", got)
	}
	if strings.Contains(got, "rootdelay") || !strings.Contains(got, " rootwait ") {
		t.Errorf("cmdline keeps the root delay: %q", got)
	}
	if !strings.HasSuffix(got, strings.Repeat(" ", 64)) || strings.Contains(got, "\n") {
		t.Errorf("cmdline not padded as one line: %q", got)
	}
	pi := &build{cfg: &Config{Hostname: "psigate", Packages: []string{"x/y"}, KernelPackage: ptr("github.com/gokrazy/kernel.rpi"), KernelExtraArgs: []string{"quiet"}}}
	got = pi.cmdline("root=/dev/mmcblk0p2 init=/gokrazy/init rootwait panic=10 oops=panic")
	if strings.Count(got, "rootwait") != 1 || !strings.Contains(got, "console=serial0,115200") || !strings.Contains(strings.TrimSpace(got), "oops=panic quiet") {
		t.Errorf("Pi cmdline %q", got)
	}
}

func ptr[T any](v T) *T { return &v }

// The generated init supervises every program with its flags and
// environment, and is valid Go.
func TestInitSource(t *testing.T) {
	c := &Config{Hostname: "h", Packages: []string{"x/app", "x/off"}, PackageConfig: map[string]PackageConfig{
		"x/app": {CommandLineFlags: []string{"-a", `quote"d`}, Environment: []string{"K=v"}, WaitForClock: true},
		"x/off": {DontStart: true},
	}}
	b := &build{cfg: c, programs: []program{{"x/dhcp", "/gokrazy/dhcp"}, {"x/app", "/user/app"}, {"x/off", "/user/off"}}}
	src, err := b.initSource()
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, want := range []string{
		`exec.Command("/gokrazy/dhcp")`,
		`exec.Command("/user/app", "-a", "quote\"d")`,
		`append(os.Environ(), "K=v")`,
		`gokrazy.NewWaitForClockService(cmd)`,
		`gokrazy.NewStoppedService(cmd)`,
		`gokrazy.Boot(buildTimestamp)`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init lacks %s:\n%s", want, s)
		}
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "init.go", src, 0); err != nil {
		t.Errorf("generated init: %v\n%s", err, s)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"amd64", "rpi"} {
		b, err := os.ReadFile(filepath.Join("..", "instances", name, "config.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Hostname":"a","Packages":["x/y"],"PackageConfig":{"x/y":{"Basename":"../z"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		// Whatever parses must name programs that stay inside /user.
		for _, p := range c.allPackages() {
			if base := c.Basename(p); strings.Contains(base, "/") || base == ".." || base == "." {
				t.Fatalf("package %q installs as %q", p, base)
			}
		}
		_ = c.SerialConsoleArg()
		_ = c.Target()
	})
}

// Extra files must stay inside the image: the tree's links (/var to
// /perm/var, /etc/resolv.conf to /tmp) point outside it on the build
// machine.
func TestExtraFilesStayInTheImage(t *testing.T) {
	for _, dst := range []string{"/var/lib/x", "/etc/resolv.conf"} {
		dir := t.TempDir()
		tree := filepath.Join(dir, "root")
		c := &Config{Hostname: "h", Packages: []string{"x/y"}, PackageConfig: map[string]PackageConfig{"x/y": {ExtraFileContents: map[string]string{dst: "x"}}}}
		b := &build{cfg: c, opts: Options{SigningKey: testKey(), BuildTime: time.Unix(0, 0)}}
		if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Symlink("/perm/var", filepath.Join(tree, "var"))
		os.Symlink("/tmp/resolv.conf", filepath.Join(tree, "etc", "resolv.conf"))
		err := b.writeFiles(tree, map[string][]byte{dst: []byte("x")})
		if err == nil || !strings.Contains(err.Error(), "link") {
			t.Errorf("extra file %s: %v, want a refusal", dst, err)
		}
	}
}

func testKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) }

// Build refuses what would make a broken or unsigned image before it
// compiles anything.
func TestBuildRefusesOptions(t *testing.T) {
	good := Options{Password: "a long password", SigningKey: testKey(), PublicKeyPEM: []byte("x"), Version: "1.0.0",
		ConfigPath: filepath.Join("..", "instances", "amd64", "config.json")}
	for name, tc := range map[string]struct {
		edit func(*Options)
		want string
	}{
		"no password":        {func(o *Options) { o.Password = "" }, "password is required"},
		"no key":             {func(o *Options) { o.SigningKey = nil }, "signing key is required"},
		"no version":         {func(o *Options) { o.Version = "" }, "version"},
		"version with space": {func(o *Options) { o.Version = "1.0 -X main.x=y" }, "version"},
		"version with slash": {func(o *Options) { o.Version = "../1" }, "version"},
	} {
		o := good
		tc.edit(&o)
		if _, err := Build(t.Context(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}
