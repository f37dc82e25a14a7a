// Package config is the appliance's whole configuration: one struct that
// composes each service's own section, with defaults, validation that
// names field paths, secret handling, and a field-level diff.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/cloudlinkd"
	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc"
)

// SchemaVersion is the version of the configuration format written by
// this build. Imports of other versions are refused until a migration
// exists.
const SchemaVersion = 1

// Config is the whole configuration of the appliance.
type Config struct {
	SchemaVersion int               `json:"schemaVersion"`
	System        System            `json:"system"`
	Network       netcfg.Config     `json:"network"`
	SBC           sbc.Config        `json:"sbc"`
	CloudLink     cloudlinkd.Config `json:"cloudLink"`
}

// System identifies the appliance on the network.
type System struct {
	// Hostname, a single DNS label; default "psigate".
	Hostname string `json:"hostname"`
	// Domain, e.g. "example.com"; with Hostname it forms the FQDN that
	// certificates should name (seed 9.3). Empty = none.
	Domain string `json:"domain"`
}

// Default is the configuration of a freshly installed appliance.
func Default() Config {
	return Config{
		SchemaVersion: SchemaVersion,
		System:        System{Hostname: "psigate"},
		Network:       netcfg.Default(),
		SBC:           sbc.Default(),
		CloudLink:     cloudlinkd.Default(),
	}
}

// Validate checks every section and the references between sections. The
// error is a field.List naming each offending field's path.
func (c Config) Validate() error {
	var l field.List
	if c.SchemaVersion != SchemaVersion {
		l.Addf("schemaVersion", "%d is not supported (want %d)", c.SchemaVersion, SchemaVersion)
	}
	l.Merge("system", c.System.Validate())
	l.Merge("network", c.Network.Validate())
	l.Merge("sbc", c.SBC.Validate())
	l.Merge("cloudLink", c.CloudLink.Validate())
	if ep := c.SBC.Emergency.RemoteEndpoint; ep != nil {
		c.checkRealm(&l, "sbc.emergency.remoteEndpoint.accessRealm", ep.AccessRealm, netcfg.RoleAccess)
		c.checkRealm(&l, "sbc.emergency.remoteEndpoint.coreRealm", ep.CoreRealm, netcfg.RoleCore)
	}
	return l.Err()
}

func (c Config) checkRealm(l *field.List, path, name string, role netcfg.Role) {
	if name == "" {
		return // reported as required by the section
	}
	r := c.Network.Realm(name)
	switch {
	case r == nil:
		l.Addf(path, "no realm named %q", name)
	case r.Role != role:
		l.Addf(path, "realm %q has role %q, want %q", name, r.Role, role)
	}
}

// Validate checks the system identity.
func (s System) Validate() error {
	var l field.List
	if err := field.CheckLabel(s.Hostname); err != nil {
		l.Addf("hostname", "%v", err)
	}
	if s.Domain != "" {
		if err := field.CheckDNSName(s.Domain); err != nil {
			l.Addf("domain", "%v", err)
		}
	}
	return l.Err()
}

// Parse decodes a configuration strictly: unknown fields, trailing data
// and wrong types are errors (naming the field where the decoder knows
// it). It does not validate.
func Parse(data []byte) (Config, error) {
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return &field.Error{Path: te.Field, Msg: fmt.Sprintf("cannot use JSON %s as %s", te.Value, te.Type)}
		case errors.As(err, &se):
			return fmt.Errorf("invalid JSON at byte %d: %w", se.Offset, err)
		}
		return fmt.Errorf("invalid configuration JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid configuration JSON: data after the top-level object")
	}
	return nil
}

// Marshal encodes c as indented JSON, secrets included.
func Marshal(c Config) []byte {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("config: marshal: %v", err)) // plain data cannot fail
	}
	return b
}

// Clone returns a deep copy of c.
func Clone(c Config) Config {
	var out Config
	if err := json.Unmarshal(Marshal(c), &out); err != nil {
		panic(fmt.Sprintf("config: clone: %v", err))
	}
	return out
}
