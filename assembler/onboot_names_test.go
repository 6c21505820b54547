package assembler

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// LinuxKit's examples (dm-crypt-loop, format/mount tests) use one onboot
// name twice; the index prefix keeps the bundles apart, each with its own
// config.json, and the runc container id init uses is the folder name.
func TestBuildDuplicateOnbootNames(t *testing.T) {
	f := newFixture(t, memRegistry(t))
	y := string(mustRead(t, f.spec))
	y = strings.Replace(y, "  - name: second\n", "  - name: first\n    command: [\"/bin/app\", \"again\"]\n", 1)
	writeSpec(t, f.dir, "test.yml", y)
	f.build(t, "out", nil)
	ents, _ := readInitrd(t, filepath.Join(f.dir, "out", "test-initrd.img"))
	args := map[string][]string{}
	for _, dir := range []string{"containers/onboot/000-first", "containers/onboot/001-first"} {
		e, ok := ents[dir+"/config.json"]
		if !ok {
			t.Fatalf("%s/config.json missing", dir)
		}
		var s specs.Spec
		if err := json.Unmarshal([]byte(e.data), &s); err != nil {
			t.Fatal(err)
		}
		args[dir] = s.Process.Args
	}
	if got := args["containers/onboot/000-first"]; !slices.Equal(got, []string{"/bin/app"}) {
		t.Errorf("000-first args = %q", got)
	}
	if got := args["containers/onboot/001-first"]; !slices.Equal(got, []string{"/bin/app", "again"}) {
		t.Errorf("001-first args = %q", got)
	}
}
