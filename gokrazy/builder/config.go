package builder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
)

// Config is a gokrazy instance configuration, the config.json that the
// upstream gok tool reads. The fields and their JSON names are gok's, so
// that the same file builds the same appliance with either tool. Fields
// that only steer gok's own command line (InternalCompatibilityFlags) are
// accepted and ignored.
type Config struct {
	Hostname   string
	DeviceType string  `json:",omitempty"`
	Update     *Update `json:",omitempty"`
	// Environment holds GOOS/GOARCH for the instance, as in gok.
	Environment   []string                 `json:",omitempty"`
	Packages      []string                 // the programs gokrazy starts at boot
	PackageConfig map[string]PackageConfig `json:",omitempty"`
	SerialConsole string                   `json:",omitempty"`
	// GokrazyPackages replaces the default system programs (dhcp, ntp,
	// randomd, heartbeat).
	GokrazyPackages       *[]string       `json:",omitempty"`
	KernelPackage         *string         `json:",omitempty"`
	FirmwarePackage       *string         `json:",omitempty"`
	EEPROMPackage         *string         `json:",omitempty"`
	KernelExtraArgs       []string        `json:",omitempty"`
	BootloaderExtraLines  []string        `json:",omitempty"`
	BootloaderExtraEEPROM []string        `json:",omitempty"`
	MountDevices          []MountDevice   `json:",omitempty"`
	InternalCompat        json.RawMessage `json:"InternalCompatibilityFlags,omitempty"`
}

// Update is gok's Update section: how the device's own HTTP server
// (status page and update endpoints) is reached.
type Update struct {
	Hostname     string `json:",omitempty"`
	UseTLS       string `json:",omitempty"`
	NoPassword   bool   `json:",omitempty"`
	HTTPPort     string `json:",omitempty"`
	HTTPSPort    string `json:",omitempty"`
	HTTPPassword string `json:",omitempty"`
	CertPEM      string `json:",omitempty"`
	KeyPEM       string `json:",omitempty"`
}

// PackageConfig is gok's per-package configuration, keyed by import path.
type PackageConfig struct {
	GoBuildEnvironment []string          `json:",omitempty"`
	GoBuildFlags       []string          `json:",omitempty"`
	GoBuildTags        []string          `json:",omitempty"`
	ExtraFilePaths     map[string]string `json:",omitempty"`
	ExtraFileContents  map[string]string `json:",omitempty"`
	Basename           string            `json:",omitempty"`
	Environment        []string          `json:",omitempty"`
	CommandLineFlags   []string          `json:",omitempty"`
	DontStart          bool              `json:",omitempty"`
	WaitForClock       bool              `json:",omitempty"`
}

// MountDevice is gok's extra mount at boot.
type MountDevice struct {
	Source  string
	Type    string
	Target  string
	Options string
}

// The system programs gok puts into every image unless told otherwise.
var defaultGokrazyPackages = []string{
	"github.com/gokrazy/gokrazy/cmd/dhcp",
	"github.com/gokrazy/gokrazy/cmd/ntp",
	"github.com/gokrazy/gokrazy/cmd/randomd",
	"github.com/gokrazy/gokrazy/cmd/heartbeat",
}

const defaultKernel = "github.com/gokrazy/kernel.amd64"

// LoadConfig reads and checks a config.json. Unknown fields are errors,
// so that a misspelt field does not silently build a different image.
func LoadConfig(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// ParseConfig decodes and checks a config.json.
func ParseConfig(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if dec.More() {
		return nil, errors.New("config: data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

var (
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	importRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._~/-]*$`)
	portRE     = regexp.MustCompile(`^[0-9]{1,5}$`)
	basenameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
)

// Validate reports the first problem that would make a broken image.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	if !hostnameRE.MatchString(c.Hostname) {
		bad("Hostname %q is not a DNS label", c.Hostname)
	}
	if len(c.Packages) == 0 {
		bad("Packages is empty: the image would run nothing")
	}
	for _, e := range c.Environment {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			bad("Environment %q is not KEY=value", e)
			continue
		}
		switch k {
		case "GOOS":
			if v != "linux" {
				bad("Environment GOOS=%s: gokrazy runs on linux", v)
			}
		case "GOARCH":
			if v != "amd64" && v != "arm64" {
				bad("Environment GOARCH=%s: psigate builds amd64 and arm64", v)
			}
		}
	}
	seen := map[string]string{}
	for _, p := range c.allPackages() {
		if !importRE.MatchString(p) || strings.Contains(p, "..") {
			bad("package %q is not an import path", p)
			continue
		}
		b := c.Basename(p)
		if !basenameRE.MatchString(b) || b == "init" {
			bad("package %q: basename %q cannot be a program name", p, b)
		}
		if other, dup := seen[b]; dup {
			bad("packages %q and %q both install as %q (set PackageConfig.Basename)", other, p, b)
		}
		seen[b] = p
	}
	for p, pc := range c.PackageConfig {
		if !c.hasPackage(p) {
			bad("PackageConfig names %q, which is not in Packages", p)
		}
		for dst := range pc.ExtraFileContents {
			if err := checkExtraPath(dst); err != nil {
				bad("PackageConfig[%q].ExtraFileContents: %v", p, err)
			}
		}
		for dst := range pc.ExtraFilePaths {
			if err := checkExtraPath(dst); err != nil {
				bad("PackageConfig[%q].ExtraFilePaths: %v", p, err)
			}
		}
	}
	if u := c.Update; u != nil {
		for name, v := range map[string]string{"HTTPPort": u.HTTPPort, "HTTPSPort": u.HTTPSPort} {
			if v != "" && !portRE.MatchString(v) {
				bad("Update.%s %q is not a port", name, v)
			}
		}
		if u.UseTLS != "" {
			bad("Update.UseTLS: TLS on gokrazy's own page is not supported by this builder; it listens on a separate port")
		}
		if u.HTTPPassword != "" {
			bad("Update.HTTPPassword: keep the password out of the configuration; the builder generates one next to the signing key")
		}
	}
	for _, a := range c.KernelExtraArgs {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r < ' ' || r == 0x7f }) || strings.HasPrefix(a, "root=") {
			bad("KernelExtraArgs %q: one kernel argument, printable, and not root= (the builder sets it)", a)
		}
	}
	if strings.ContainsFunc(c.SerialConsole, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		bad("SerialConsole %q: a console name such as ttyS0,115200", c.SerialConsole)
	}
	for _, l := range c.BootloaderExtraLines {
		if strings.ContainsAny(l, "\r\n") {
			bad("BootloaderExtraLines %q: one line each", l)
		}
	}
	if len(c.MountDevices) > 0 {
		bad("MountDevices are not supported by this builder")
	}
	return errors.Join(errs...)
}

func checkExtraPath(p string) error {
	clean := path.Clean("/" + p)
	switch {
	case !strings.HasPrefix(p, "/") || clean != p:
		return fmt.Errorf("%q must be a clean absolute path", p)
	case clean == "/perm" || strings.HasPrefix(clean, "/perm/"):
		return fmt.Errorf("%q: files under /perm belong to the device", p)
	case strings.HasPrefix(clean, "/gokrazy/") || strings.HasPrefix(clean, "/user/"):
		return fmt.Errorf("%q: /gokrazy and /user hold the programs", p)
	}
	return nil
}

// Arch is the GOARCH the instance builds for: its Environment's GOARCH,
// else arm64 for a Raspberry Pi kernel, else amd64.
func (c *Config) Arch() string {
	for _, e := range c.Environment {
		if v, ok := strings.CutPrefix(e, "GOARCH="); ok {
			return v
		}
	}
	if strings.Contains(c.Kernel(), "kernel.rpi") || strings.Contains(c.Kernel(), "kernel.arm64") {
		return "arm64"
	}
	return "amd64"
}

// Target names the hardware an image is for, as update bundles carry
// it: "rpi" for the Raspberry Pi kernel, else the architecture.
func (c *Config) Target() string {
	if strings.Contains(c.Kernel(), "kernel.rpi") {
		return "rpi"
	}
	return c.Arch()
}

// Kernel is the kernel package's import path.
func (c *Config) Kernel() string {
	if c.KernelPackage != nil {
		return *c.KernelPackage
	}
	return defaultKernel
}

// Firmware is the firmware package's import path, "" for none.
func (c *Config) Firmware() string {
	if c.FirmwarePackage != nil {
		return *c.FirmwarePackage
	}
	return ""
}

// SystemPackages are gokrazy's own programs, installed under /gokrazy.
func (c *Config) SystemPackages() []string {
	if c.GokrazyPackages != nil {
		return *c.GokrazyPackages
	}
	return defaultGokrazyPackages
}

func (c *Config) allPackages() []string {
	return append(append([]string{}, c.SystemPackages()...), c.Packages...)
}

func (c *Config) hasPackage(p string) bool {
	for _, q := range c.allPackages() {
		if q == p {
			return true
		}
	}
	return false
}

// Basename is the program name a package installs as: its configured
// Basename, else the last element of its import path (skipping a /vN
// major-version suffix).
func (c *Config) Basename(pkg string) string {
	if pc, ok := c.PackageConfig[pkg]; ok && pc.Basename != "" {
		return pc.Basename
	}
	return goBuildName(pkg)
}

// HTTPPort is the port of gokrazy's own status page and update
// endpoints (default 80, as gokrazy's).
func (c *Config) HTTPPort() string {
	if c.Update != nil && c.Update.HTTPPort != "" {
		return c.Update.HTTPPort
	}
	return "80"
}

// SerialConsoleArg is the console= argument for the kernel, "" for none.
func (c *Config) SerialConsoleArg() string {
	switch c.SerialConsole {
	case "disabled", "off":
		return ""
	case "", "serial0", "UART0":
		if c.Target() == "amd64" {
			return "ttyS0,115200"
		}
		return "serial0,115200"
	}
	return c.SerialConsole
}
