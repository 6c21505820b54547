package flavormoby

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	grouptypes "github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

const relGroup = `{"ID":"web","Properties":{"Allocation":{"Size":2},
  "Instance":{"Plugin":"instance-qemu","Properties":{"memory":256}},
  "Flavor":{"Plugin":"flavor-moby","Properties":{"spec":"web.yml","userdata":"{{.Group}}"}}}}`

// checkout writes the example group file and its spec under root/examples/g, as a clone of
// the repository would hold them, and returns the group file's path.
func checkout(t *testing.T, root, specContent string) string {
	t.Helper()
	dir := filepath.Join(root, "examples", "g")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "web.yml"), []byte(specContent), 0o644)
	p := filepath.Join(dir, "group.json")
	os.WriteFile(p, []byte(relGroup), 0o644)
	return p
}

func readGroup(t *testing.T, path string) spi.GroupSpec {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g spi.GroupSpec
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func flavorOf(t *testing.T, g spi.GroupSpec) spi.Any {
	t.Helper()
	p, err := grouptypes.Parse(g.Properties)
	if err != nil {
		t.Fatal(err)
	}
	return p.Flavor.Properties
}

func configHash(t *testing.T, g spi.GroupSpec) string {
	t.Helper()
	p, err := grouptypes.Parse(g.Properties)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p.InstanceHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRelativeSpecCommittedFromAnotherFolder: a group file naming its spec relative to itself
// ("spec": "web.yml"), committed from another working folder (the plugin's is yet another),
// builds that spec; the plugin never resolves the path against its own working folder.
func TestRelativeSpecCommittedFromAnotherFolder(t *testing.T) {
	groupFile := checkout(t, t.TempDir(), specYAML)
	t.Chdir(t.TempDir()) // neither the group file's folder nor the repository root
	f, b := newFlavor(t)

	raw := readGroup(t, groupFile)
	// Sent as written, the plugin cannot know what the path is relative to: refused clearly.
	if err := f.Validate(context.Background(), flavorOf(t, raw), spi.Allocation{Size: 2}); err == nil || !strings.Contains(err.Error(), `"web.yml" is a relative path`) {
		t.Fatalf("relative spec without content: %v", err)
	}

	g, err := InlineGroup(raw, filepath.Dir(groupFile), "flavor-moby")
	if err != nil {
		t.Fatal(err)
	}
	props := flavorOf(t, g)
	if strings.Contains(string(props), filepath.Dir(groupFile)) {
		t.Fatalf("the committed Properties hold this machine's path: %s", props)
	}
	if err := f.Validate(context.Background(), props, spi.Allocation{Size: 2}); err != nil {
		t.Fatal(err)
	}
	s, err := f.Prepare(context.Background(), props, spi.Spec{}, spi.Allocation{Size: 2}, spi.Index{Group: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Init != "web" || b.builds.Load() != 1 {
		t.Fatalf("Init %q, %d builds", s.Init, b.builds.Load())
	}
	boot := map[string]string{}
	json.Unmarshal(s.Properties, &boot)
	built, err := os.ReadFile(boot["moby"] + "-kernel")
	if err != nil || !strings.Contains(string(built), "mobykit/hello:latest") {
		t.Fatalf("the build is not of the group file's spec: %q, %v", built, err)
	}

	// A group using another flavor is left as it is.
	other := spi.GroupSpec{ID: "x", Properties: spi.Any(`{"Flavor":{"Plugin":"vanilla","Properties":{"spec":"web.yml"}}}`)}
	if g, err := InlineGroup(other, "/nonexistent", "flavor-moby"); err != nil || string(g.Properties) != string(other.Properties) {
		t.Fatalf("other flavor: %s, %v", g.Properties, err)
	}
}

// TestConfigHashSameAcrossCheckouts: two clones of the repository at different absolute
// paths commit the same group file and spec with the same config hash; editing the spec
// changes it (the group rolls without a re-pin).
func TestConfigHashSameAcrossCheckouts(t *testing.T) {
	hashOf := func(groupFile string) string {
		g, err := InlineGroup(readGroup(t, groupFile), filepath.Dir(groupFile), "flavor-moby")
		if err != nil {
			t.Fatal(err)
		}
		return configHash(t, g)
	}
	a := hashOf(checkout(t, filepath.Join(t.TempDir(), "alice", "src", "mobykit"), specYAML))
	b := hashOf(checkout(t, filepath.Join(t.TempDir(), "ci"), specYAML))
	if a != b {
		t.Fatalf("same files, different config hashes: %s and %s", a, b)
	}
	edited := hashOf(checkout(t, t.TempDir(), specYAML+"  - name: extra\n    image: mobykit/hello:latest\n"))
	if edited == a {
		t.Fatal("editing the spec left the config hash unchanged")
	}
}

// TestInlineRefusesRelativeFilesSource: a spec sent inline cannot take a `files: source:`
// relative to its folder (the plugin would read another file): refused at commit, naming the
// spec and the entry.
func TestInlineRefusesRelativeFilesSource(t *testing.T) {
	groupFile := checkout(t, t.TempDir(), specYAML+"files:\n  - path: etc/motd\n    source: motd.txt\n")
	_, err := InlineGroup(readGroup(t, groupFile), filepath.Dir(groupFile), "flavor-moby")
	if err == nil || !strings.Contains(err.Error(), "web.yml") || !strings.Contains(err.Error(), `source "motd.txt" is relative`) {
		t.Fatalf("relative source: %v", err)
	}
}

// TestInlineRefusesStalePin: a spec_digest that no longer matches the files is refused at
// commit, before anything is sent.
func TestInlineRefusesStalePin(t *testing.T) {
	groupFile := checkout(t, t.TempDir(), specYAML)
	doc, _ := os.ReadFile(groupFile)
	pinned, err := Pin(doc, filepath.Dir(groupFile), "flavor-moby")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(groupFile, pinned, 0o644)
	if _, err := InlineGroup(readGroup(t, groupFile), filepath.Dir(groupFile), "flavor-moby"); err != nil {
		t.Fatalf("fresh pin: %v", err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(groupFile), "web.yml"), []byte(specYAML+"# edited\n"), 0o644)
	if _, err := InlineGroup(readGroup(t, groupFile), filepath.Dir(groupFile), "flavor-moby"); err == nil || !strings.Contains(err.Error(), "changed since it was pinned") {
		t.Fatalf("stale pin: %v", err)
	}
}
