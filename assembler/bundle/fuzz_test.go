package bundle

import (
	"encoding/json"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/spec"
)

// FuzzGenerate feeds arbitrary org.mobyproject.config labels (untrusted:
// they come from images) through Generate: it must never panic, and what it
// accepts must be valid JSON.
func FuzzGenerate(f *testing.F) {
	raw, err := os.ReadFile("testdata/images.json")
	if err != nil {
		f.Fatal(err)
	}
	var cfgs map[string]v1.Config
	if err := json.Unmarshal(raw, &cfgs); err != nil {
		f.Fatal(err)
	}
	for _, c := range cfgs {
		f.Add(c.Labels[ConfigLabel])
	}
	f.Add(`{"devices":[{"path":"/dev/x","type":"c","major":1,"minor":2,"mode":"0600"}],"uid":"a"}`)
	f.Add(`{"mounts":[{"type":"bind","source":"v","destination":"/v"}],"runtime":{"bindNS":{"net":"/x"}}}`)
	f.Fuzz(func(t *testing.T, label string) {
		img := &spec.Image{Name: "a", Image: "x", ImageConfig: spec.ImageConfig{BindsAdd: &[]string{"/a:/b"}}}
		cfg := v1.Config{Cmd: []string{"/x"}, Labels: map[string]string{ConfigLabel: label}}
		b, err := Generate(img, cfg, Options{Path: "containers/services/a", IDMap: map[string]uint32{"a": 100}})
		if err != nil {
			return
		}
		if !json.Valid(b.Config) || !json.Valid(b.Runtime) {
			t.Fatalf("invalid JSON for label %q", label)
		}
		if _, err := Effective(img, cfg); err != nil {
			t.Fatalf("Generate accepted the label but Effective did not: %v", err)
		}
	})
}
