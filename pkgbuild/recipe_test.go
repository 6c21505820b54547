package pkgbuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRecipe(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"empty", "", ""},
		{"full", `
name: x
go: [{package: ./cmd/hello, path: /hello}]
gomodules: [{module: example.com/m@v1.0.0, path: /usr/bin/m, cgo: true, tags: [a]}]
debian: [{package: busybox-static, extract: {bin/busybox: /bin/busybox}}]
files:
  - {path: /etc/a, contents: "a\n", mode: "0600"}
  - {path: /d, directory: true}
  - {path: /l, symlink: a}
config: {entrypoint: [/hello], env: [A=1]}
label: {net: host, capabilities: [CAP_NET_ADMIN], binds: ["/a:/a"]}
`, ""},
		{"unknown field", "nmae: x\n", "field nmae not found"},
		{"bad name", "name: X Y\n", "not a valid image name"},
		{"relative path", "go: [{package: ./cmd/hello, path: hello}]\n", "absolute clean path"},
		{"unclean path", "files: [{path: /a/../b, contents: x}]\n", "absolute clean path"},
		{"two kinds", "files: [{path: /a, contents: x, symlink: b}]\n", "only one of"},
		{"bad mode", "files: [{path: /a, contents: x, mode: \"9\"}]\n", "not octal"},
		{"escaping source", "files: [{path: /a, source: ../x}]\n", "inside the recipe folder"},
		{"module without version", "gomodules: [{module: example.com/m, path: /m}]\n", "module@version"},
		{"extract escape", "debian: [{package: p, extract: {../x: /x}}]\n", `debian[0].extract: "../x" must not contain ".."`},
		{"extract relative", "debian: [{package: p, extract: {x: x}}]\n", `debian[0].extract[x]`},
		{"arch extract escape", "debian: [{package: p}, {package: q, arches: {arm64: {../x: /x}}}]\n", `debian[1].arches.arm64: "../x" must not contain ".."`},
		{"arch extract relative", "debian: [{package: p, arches: {arm64: {x: x}}}]\n", `debian[0].arches.arm64[x]`},
		{"label typo", "label: {capabilites: [all]}\n", "not a valid org.mobyproject.config"},
		{"label wrong type", "label: {net: [host]}\n", "not a valid org.mobyproject.config"},
		{"kernel without package", "kernel: {modules: [overlay]}\n", "kernel.package"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRecipe("images/x/build.yml", []byte(tc.yaml))
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error = %v, want one containing %q", err, tc.err)
			}
			if !strings.Contains(err.Error(), "images/x/build.yml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLabelJSONIsSorted(t *testing.T) {
	r, err := ParseRecipe("x", []byte("label: {pid: host, net: host, capabilities: [all]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.labelJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"capabilities":["all"],"net":"host","pid":"host"}`; got != want {
		t.Errorf("label = %s, want %s", got, want)
	}
}

func TestSourceConfinedToRecipe(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "link"))
	os.WriteFile(filepath.Join(dir, "ok.sh"), []byte("#!/bin/sh\n"), 0o755)
	r := &Recipe{Dir: dir}
	if _, _, err := r.readSource("link"); err == nil {
		t.Error("a symlink leading out of the recipe folder was followed")
	}
	data, mode, err := r.readSource("ok.sh")
	if err != nil || string(data) != "#!/bin/sh\n" || mode&0o111 == 0 {
		t.Errorf("ok.sh: %q %v %v", data, mode, err)
	}
}
