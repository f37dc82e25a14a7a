package config

import (
	"encoding/json"
	"fmt"
	"time"
)

// ExportFormat marks a psigate configuration export.
const ExportFormat = "psigate-config"

// Export is the JSON document of a backup.
type Export struct {
	Format   string    `json:"format"` // always ExportFormat
	Exported time.Time `json:"exported"`
	// MachineID is the appliance the export was taken from.
	MachineID string `json:"machineID"`
	// Revision is the running revision that was exported.
	Revision uint64 `json:"revision"`
	// SecretsIncluded says whether keys and passwords are in Config;
	// without them an import keeps the appliance's current secrets.
	SecretsIncluded bool   `json:"secretsIncluded"`
	Config          Config `json:"config"`
}

// NewExport wraps c for a backup, with its secrets removed unless
// withSecrets.
func NewExport(c Config, machineID string, revision uint64, now time.Time, withSecrets bool) Export {
	if !withSecrets {
		c = Redact(c)
	}
	return Export{
		Format: ExportFormat, Exported: now.UTC(), MachineID: machineID,
		Revision: revision, SecretsIncluded: withSecrets, Config: c,
	}
}

// ParseImport decodes an Export document, or a bare Config, strictly.
// It does not validate.
func ParseImport(data []byte) (Config, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return Config{}, decodeStrict(data, &probe) // the same error, worded as ours
	}
	if _, ok := probe["format"]; !ok {
		return Parse(data)
	}
	var e Export
	if err := decodeStrict(data, &e); err != nil {
		return Config{}, err
	}
	if e.Format != ExportFormat {
		return Config{}, fmt.Errorf("format %q is not %q", e.Format, ExportFormat)
	}
	return e.Config, nil
}
