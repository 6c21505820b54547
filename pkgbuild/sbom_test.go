package pkgbuild

import (
	"debug/buildinfo"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

func TestDebPackageVersionAndPurl(t *testing.T) {
	for _, c := range []struct {
		d                    debInfo
		version, purl, errAt string
	}{
		{d: debInfo{Package: "busybox-static", Arch: "amd64", Filename: "busybox-static_1%3a1.35.0-4+b1_amd64.deb", SHA256: "ab"},
			version: "1:1.35.0-4+b1", purl: "pkg:deb/debian/busybox-static@1:1.35.0-4+b1?arch=amd64"},
		{d: debInfo{Package: "isolinux", Arch: "amd64", Filename: "isolinux_3%3a6.04~git20190206.bf6db5b4+dfsg1-3_all.deb", SHA256: "cd"},
			version: "3:6.04~git20190206.bf6db5b4+dfsg1-3", purl: "pkg:deb/debian/isolinux@3:6.04~git20190206.bf6db5b4+dfsg1-3?arch=all"},
		{d: debInfo{Package: "x", Arch: "amd64", Filename: "y_1_amd64.deb"}, errAt: "is not x_VERSION_ARCH.deb"},
		{d: debInfo{Package: "x", Arch: "amd64", Filename: "x_amd64.deb"}, errAt: "is not x_VERSION_ARCH.deb"},
	} {
		p, err := debPackage(c.d)
		if c.errAt != "" {
			if err == nil || !strings.Contains(err.Error(), c.errAt) {
				t.Errorf("%s: err %v, want %q", c.d.Filename, err, c.errAt)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Version != c.version || p.ExternalRefs[0].Locator != c.purl || p.Checksums[0].Value != c.d.SHA256 {
			t.Errorf("%s: version %q purl %q checksums %v", c.d.Filename, p.Version, p.ExternalRefs[0].Locator, p.Checksums)
		}
	}
}

// TestGoPackages: the scratch main module is left out, a replaced module is listed as its
// replacement, and an h1 sum becomes a SHA256 checksum of the same bytes.
func TestGoPackages(t *testing.T) {
	bi := &buildinfo.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: scratchModulePath, Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "golang.org/x/sys", Version: "v0.37.0", Sum: "h1:fdNQudmxPjkdUTPnLn5mdQv7Zwvbvpaxqs831goi9kQ="},
			{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v1.1.0", Sum: "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}},
		},
	}
	var got []string
	for _, p := range goPackages(bi) {
		s := p.Name + " " + p.Version + " " + p.ExternalRefs[0].Locator
		for _, c := range p.Checksums {
			s += " " + c.Algorithm + ":" + c.Value
		}
		got = append(got, s)
	}
	want := []string{
		"example.com/new v1.1.0 pkg:golang/example.com/new@v1.1.0 SHA256:" + strings.Repeat("0", 64),
		"golang.org/x/sys v0.37.0 pkg:golang/golang.org/x/sys@v0.37.0 SHA256:7dd350b9d9b13e391d5133e72e7e66750bfb670bdbbe96b1aacf37d60a22f644",
		"stdlib 1.26.8 pkg:golang/stdlib@1.26.8",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// BenchmarkSBOM times the SBOM of an image holding one Go program (this test binary, ~10 MB)
// and two Debian packages: the cost pkg build adds per image (reading the layer back and the
// binary's build information).
func BenchmarkSBOM(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	t := NewTree()
	if err := t.File("/usr/bin/prog", 0o755, bin); err != nil {
		b.Fatal(err)
	}
	r := &Recipe{Name: "bench", Go: []GoProgram{{Package: "./x", Path: "/usr/bin/prog"}}}
	bld := &Builder{}
	img, err := bld.imageFromTree(t, r)
	if err != nil {
		b.Fatal(err)
	}
	res := &resolved{tag: "t", debs: []debInfo{
		{Package: "busybox-static", Arch: "amd64", Filename: "busybox-static_1%3a1.35.0-4_amd64.deb", SHA256: "ab"},
		{Package: "dhcpcd-base", Arch: "amd64", Filename: "dhcpcd-base_9.4.1-24_amd64.deb", SHA256: "cd"},
	}}
	b.SetBytes(int64(len(bin)))
	var doc []byte
	for b.Loop() {
		if doc, err = bld.SBOM(r, res, img); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(doc)), "sbom-bytes")
}
