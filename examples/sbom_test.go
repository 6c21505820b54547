package examples

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/internal/testenv"
)

// initrdFile returns the contents of one file of an initramfs.
func initrdFile(t *testing.T, p, name string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := initrd.Decompress(f)
	if err != nil {
		t.Fatal(err)
	}
	cr := initrd.NewReader(zr)
	var out []byte
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			if out, err = io.ReadAll(cr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out == nil {
		t.Fatalf("%s: no %s", p, name)
	}
	return out
}

// goSum returns the h1 sum go.sum at p records for module@version.
func goSum(t *testing.T, p, module, version string) string {
	t.Helper()
	for _, l := range strings.Split(string(mustReadFile(t, p)), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == module && f[1] == version {
			return f[2]
		}
	}
	t.Fatalf("%s: no sum for %s %s", p, module, version)
	return ""
}

type spdxPackage struct {
	ID        string `json:"SPDXID"`
	Name      string `json:"name"`
	Version   string `json:"versionInfo"`
	Purpose   string `json:"primaryPackagePurpose"`
	Comment   string `json:"comment"`
	Checksums []struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"checksumValue"`
	} `json:"checksums"`
	Refs []struct {
		Locator string `json:"referenceLocator"`
	} `json:"externalRefs"`
}

// TestHelloSBOM builds examples/hello.yml from the system images (each carrying the SBOM
// pkg build attached) and checks the merged /sbom.spdx.json: every image is there, with its
// Debian packages (busybox-static, whose checksum is the .deb pkg build unpacked, and the
// kernel's) and the Go modules of its programs (runc's own module and init's golang.org/x/sys,
// with the versions and h1 sums their go.sum files record); a second build writes the same bytes.
func TestHelloSBOM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the system images")
	}
	cacheDir := buildImages(t)
	out := t.TempDir()
	build := func(dir string) []byte {
		t.Helper()
		if _, err := assembler.BuildFiles(context.Background(), []string{"hello.yml"}, assembler.Options{
			Name: "hello", OutputDir: filepath.Join(out, dir), CacheDir: cacheDir,
		}); err != nil {
			t.Fatalf("build hello.yml: %v", err)
		}
		return initrdFile(t, filepath.Join(out, dir, "hello-initrd.img"), assembler.DefaultSBOMOutput)
	}
	raw := build("a")
	if again := build("b"); !bytes.Equal(raw, again) {
		t.Fatalf("two builds of hello.yml give different SBOMs:\n%s\n%s", raw, again)
	}
	var doc struct {
		Version  string        `json:"spdxVersion"`
		Packages []spdxPackage `json:"packages"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("sbom.spdx.json: %v", err)
	}
	if doc.Version != "SPDX-2.3" {
		t.Errorf("spdxVersion %q", doc.Version)
	}
	images := map[string]bool{}
	byName := map[string][]spdxPackage{}
	for _, p := range doc.Packages {
		if p.Purpose == "CONTAINER" {
			images[p.Name] = true
			if strings.Contains(p.Comment, "no SBOM") {
				t.Errorf("image %s has no SBOM", p.Name)
			}
		}
		byName[p.Name] = append(byName[p.Name], p)
	}
	for _, img := range []string{"kernel", "init", "runc", "sysctl", "dhcpcd", "hello", "getty"} {
		if !images["mobykit/"+img] {
			t.Errorf("image mobykit/%s missing from the SBOM (images: %v)", img, images)
		}
	}

	bb := byName["busybox-static"]
	if len(bb) == 0 {
		t.Fatal("no busybox-static package")
	}
	for _, p := range bb {
		if p.Version == "" || len(p.Refs) != 1 || !strings.HasPrefix(p.Refs[0].Locator, "pkg:deb/debian/busybox-static@") || len(p.Checksums) != 1 {
			t.Errorf("busybox-static: %+v", p)
			continue
		}
		deb := filepath.Join(testenv.CacheDir(), "pkgbuild", "debs", p.Checksums[0].Value+".deb")
		if _, err := os.Stat(deb); err != nil {
			t.Errorf("busybox-static's checksum names no .deb pkg build fetched: %v", err)
		}
	}
	kernel := false
	for name := range byName {
		if strings.HasPrefix(name, "linux-image-") {
			kernel = true
		}
	}
	if !kernel {
		t.Error("no linux-image-* package")
	}

	checkModule := func(module, version, sum string) {
		t.Helper()
		ps := byName[module]
		for _, p := range ps {
			if p.Version != version {
				continue
			}
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sum, "h1:"))
			if len(p.Checksums) != 1 || p.Checksums[0].Value != hex.EncodeToString(raw) || p.Comment != "go.sum "+sum {
				t.Errorf("%s %s: checksums %v comment %q, want go.sum's %s", module, version, p.Checksums, p.Comment, sum)
			}
			if len(p.Refs) != 1 || p.Refs[0].Locator != "pkg:golang/"+module+"@"+version {
				t.Errorf("%s %s: purl %+v", module, version, p.Refs)
			}
			return
		}
		t.Errorf("no package %s %s (have %+v)", module, version, ps)
	}
	runcSum := filepath.Join(testenv.CacheDir(), "pkgbuild", "gomod", "github.com_opencontainers_runc_v1.4.0", "go.sum")
	checkModule("github.com/opencontainers/runc", "v1.4.0", goSum(t, runcSum, "github.com/opencontainers/runc", "v1.4.0"))
	sysVersion := ""
	for _, l := range strings.Split(string(mustReadFile(t, "../go.mod")), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "golang.org/x/sys" {
			sysVersion = f[1]
		}
	}
	checkModule("golang.org/x/sys", sysVersion, goSum(t, "../go.sum", "golang.org/x/sys", sysVersion))
}
