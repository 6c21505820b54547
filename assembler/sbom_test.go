package assembler

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"

	"github.com/mobykit/mobykit/assembler/sbom"
)

// pushWithSBOM pushes img to ref as buildkit does: an index holding the image and an
// attestation manifest whose in-toto layer carries stmt.
func pushWithSBOM(t testing.TB, ref string, img v1.Image, stmt []byte) {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	att, err := sbom.Attestation([]byte(`{}`), "pkg:docker/x", d)
	if err != nil {
		t.Fatal(err)
	}
	if stmt != nil {
		// replace the statement with stmt, keeping the layer's annotation
		att, err = attestationOf(stmt)
		if err != nil {
			t.Fatal(err)
		}
	}
	desc, err := sbom.Descriptor(att, d)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: desc.Platform, Annotations: desc.Annotations}})
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
}

func attestationOf(stmt []byte) (v1.Image, error) {
	img, err := sbom.Attestation([]byte(`{}`), "x", v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)})
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, m.MediaType)
	base = mutate.ConfigMediaType(base, m.Config.MediaType)
	return mutate.Append(base, mutate.Addendum{Layer: staticLayer(stmt), Annotations: m.Layers[0].Annotations})
}

func sbomSpec(host string) string {
	return `
kernel:
  image: ` + host + `/kernel:6.1
  cmdline: "console=ttyS0"
init:
  - ` + host + `/init:1
services:
  - name: app
    image: ` + host + `/app:1
`
}

// sbomFixture pushes the fixture's kernel and init plain, and app with the given statement as
// its SBOM attestation; it returns the spec path and cache folder.
func sbomFixture(t *testing.T, stmt []byte) (string, string) {
	host := memRegistry(t)
	f := newFixture(t, host) // kernel, init, app pushed plain
	app := testImage(t, nil, []tf{{name: "bin/app", data: "APP", mode: 0o755}})
	pushWithSBOM(t, host+"/app:1", app, stmt)
	return writeSpec(t, f.dir, "sbom.yml", sbomSpec(host)), f.cache
}

func buildSBOM(t *testing.T, spec, cache, out string, mod func(*Options)) (map[string]any, error) {
	t.Helper()
	o := Options{Name: "test", OutputDir: filepath.Join(filepath.Dir(spec), out), CacheDir: cache}
	if mod != nil {
		mod(&o)
	}
	if _, err := BuildFiles(context.Background(), []string{spec}, o); err != nil {
		return nil, err
	}
	ents, _ := readInitrd(t, filepath.Join(o.OutputDir, "test-initrd.img"))
	e, ok := ents["sbom.spdx.json"]
	if !ok {
		return nil, nil
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(e.data), &doc); err != nil {
		t.Fatalf("sbom.spdx.json: %v\n%s", err, e.data)
	}
	doc["raw"] = e.data
	return doc, nil
}

// TestSBOMFromRegistryMerged: an image pulled from a registry with a third-party (syft-like)
// SPDX attestation has its packages, files and relationships in the build's SBOM, renamed
// under the image; images without one are listed as such; --no-sbom leaves the file out.
func TestSBOMFromRegistryMerged(t *testing.T) {
	third := `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"app","dataLicense":"CC0-1.0",
"documentNamespace":"https://example.com/random-uuid","creationInfo":{"created":"2024-05-06T07:08:09Z","creators":["Tool: syft"]},
"packages":[{"SPDXID":"SPDXRef-Package-musl","name":"musl","versionInfo":"1.2.4","supplier":"Organization: Alpine","downloadLocation":"NONE","hasFiles":["SPDXRef-File-libc"]}],
"files":[{"SPDXID":"SPDXRef-File-libc","fileName":"/lib/libc.so"}],
"relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-Package-musl"},
{"spdxElementId":"SPDXRef-Package-musl","relationshipType":"CONTAINS","relatedSpdxElement":"SPDXRef-File-libc"}]}`
	stmt := `{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[],"predicate":` + third + `}`
	spec, cache := sbomFixture(t, []byte(stmt))
	doc, err := buildSBOM(t, spec, cache, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := doc["raw"].(string)
	for _, want := range []string{
		`"name": "musl"`, `"supplier": "Organization: Alpine"`, `"SPDXID": "SPDXRef-I2-Package-musl"`,
		`"hasFiles": [` + "\n" + `    "SPDXRef-I2-File-libc"`, `"fileName": "/lib/libc.so"`,
		`"comment": "image used as kernel; the image has no SBOM"`,
		`"comment": "image used as services[0] app"`,
		`"created": "1970-01-01T00:00:00Z"`,
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("merged SBOM lacks %s:\n%s", want, raw)
		}
	}
	found := false
	for _, r := range doc["relationships"].([]any) {
		r := r.(map[string]any)
		if r["spdxElementId"] == "SPDXRef-Image-2" && r["relationshipType"] == "CONTAINS" && r["relatedSpdxElement"] == "SPDXRef-I2-Package-musl" {
			found = true
		}
	}
	if !found {
		t.Errorf("the document's DESCRIBES musl is not the image's CONTAINS musl:\n%s", raw)
	}
	if strings.Contains(raw, "random-uuid") || strings.Contains(raw, "127.0.0.1") {
		t.Errorf("merged SBOM names the input's namespace or the registry:\n%s", raw)
	}
	// Reproducible: a second build, from a fresh cache, writes the same bytes.
	again, err := buildSBOM(t, spec, filepath.Join(t.TempDir(), "cache"), "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if again["raw"] != raw {
		t.Errorf("two builds of the same images give different SBOMs:\n%s\n%s", raw, again["raw"])
	}
	none, err := buildSBOM(t, spec, cache, "c", func(o *Options) { o.NoSBOM = true })
	if err != nil || none != nil {
		t.Errorf("--no-sbom: err %v, SBOM %v", err, none)
	}
}

// TestMalformedSBOMNamesImage: an attestation from a registry whose SPDX document is not
// JSON fails the build with an error naming the image and --no-sbom; --no-sbom builds.
func TestMalformedSBOMNamesImage(t *testing.T) {
	for name, stmt := range map[string]string{
		"not json":       `{"_type":"x","predicateType":"https://spdx.dev/Document","predicate":{"spdxVersion": [}`,
		"wrong type":     `{"_type":"x","predicateType":"https://slsa.dev/provenance/v0.2","predicate":{}}`,
		"not spdx":       `{"_type":"x","predicateType":"https://spdx.dev/Document","predicate":{"spdxVersion":"CycloneDX"}}`,
		"packages array": `{"_type":"x","predicateType":"https://spdx.dev/Document","predicate":{"spdxVersion":"SPDX-2.3","packages":[1,2]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			spec, cache := sbomFixture(t, []byte(stmt))
			_, err := buildSBOM(t, spec, cache, "a", nil)
			if err == nil || !strings.Contains(err.Error(), "services[0] app") || !strings.Contains(err.Error(), "--no-sbom") {
				t.Fatalf("build with a malformed SBOM: %v; want an error naming services[0] app and --no-sbom", err)
			}
			if _, err := buildSBOM(t, spec, cache, "b", func(o *Options) { o.NoSBOM = true }); err != nil {
				t.Fatalf("--no-sbom: %v", err)
			}
		})
	}
}

// TestSBOMBombIsRefused: an attestation layer over sbom.MaxSize is neither stored nor read: the
// build fails from its declared size, naming the image.
func TestSBOMBombIsRefused(t *testing.T) {
	big := `{"_type":"x","predicateType":"https://spdx.dev/Document","predicate":{"spdxVersion":"SPDX-2.3","name":"` +
		strings.Repeat("A", sbom.MaxSize) + `"}}`
	spec, cache := sbomFixture(t, []byte(big))
	_, err := buildSBOM(t, spec, cache, "a", nil)
	if !errors.Is(err, sbom.ErrTooLarge) || !strings.Contains(err.Error(), "services[0] app") {
		t.Fatalf("build with a %d-byte SBOM: %v; want ErrTooLarge naming services[0] app", len(big), err)
	}
	if matches, _ := filepath.Glob(filepath.Join(cache, "blobs", "sha256", "*")); len(matches) > 0 {
		for _, m := range matches {
			if st := fileSize(t, m); st > sbom.MaxSize {
				t.Errorf("the cache stored a blob of %d bytes: %s", st, m)
			}
		}
	}
}

func staticLayer(b []byte) v1.Layer { return static.NewLayer(b, sbom.InTotoMediaType) }

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
