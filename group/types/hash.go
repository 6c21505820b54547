package types

import (
	"bytes"
	"crypto/sha1"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
)

// InstanceHash is the config hash of docs/infrakit/PROTOCOL.md §12 (InfraKit's Spec.InstanceHash): SHA-1 over
// the Instance and then the Flavor {Plugin, Properties} objects, each round-tripped through a
// generic map (numbers become float64) and written with json.MarshalIndent(v, "  ", "  "),
// concatenated with nothing between them; then lower-case base32 without padding (32
// characters). Allocation and Updating do not enter it.
func (p Properties) InstanceHash() (string, error) {
	text, err := p.HashedText()
	if err != nil {
		return "", err
	}
	sum := sha1.Sum(text)
	return strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:]), "=")), nil
}

// HashedText is the exact byte string InstanceHash feeds to SHA-1.
func (p Properties) HashedText() ([]byte, error) {
	var buf bytes.Buffer
	for _, part := range []struct {
		name string
		spec PluginSpec
	}{{"Instance", p.Instance}, {"Flavor", p.Flavor}} {
		b, err := canonical(part.spec)
		if err != nil {
			return nil, fmt.Errorf("config hash of %s %q: %w", part.name, part.spec.Plugin, err)
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func canonical(s PluginSpec) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, err
	}
	return json.MarshalIndent(generic, "  ", "  ")
}
