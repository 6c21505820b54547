package pkgbuild

import (
	"archive/tar"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/mobykit/mobykit/internal/testenv"
)

// TestDebConcat: concat joins the matching files in name order, each ending in a newline, adds
// nothing else of the package, and refuses a glob that matches nothing.
func TestDebConcat(t *testing.T) {
	files := []DebFile{
		{Path: "usr/share/ca/b.crt", Type: tar.TypeReg, Mode: 0o644, Data: []byte("B")},
		{Path: "usr/share/ca/a.crt", Type: tar.TypeReg, Mode: 0o644, Data: []byte("A\n")},
		{Path: "usr/share/ca/c.txt", Type: tar.TypeReg, Mode: 0o644, Data: []byte("C")},
		{Path: "usr/share/ca/d.crt", Type: tar.TypeSymlink, Linkname: "a.crt"},
		{Path: "usr/sbin/update-ca-certificates", Type: tar.TypeReg, Mode: 0o755, Data: []byte("#!/bin/sh")},
	}
	tr := NewTree()
	if err := addDeb(tr, files, DebianPackage{Package: "ca", Concat: map[string]string{"/etc/bundle.crt": "usr/share/ca/*.crt"}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tr.Paths(), " "); got != "/etc/bundle.crt" {
		t.Errorf("paths = %s, want only the bundle", got)
	}
	if e := tr.Get("/etc/bundle.crt"); e == nil || string(e.Data) != "A\nB\n" || e.Mode != 0o644 {
		t.Errorf("bundle = %+v, want A\\nB\\n mode 0644", e)
	}
	err := addDeb(NewTree(), files, DebianPackage{Package: "ca", Concat: map[string]string{"/etc/bundle.crt": "usr/share/nope/*.crt"}})
	if err == nil || !strings.Contains(err.Error(), `concat /etc/bundle.crt: no file matches "usr/share/nope/*.crt"`) {
		t.Errorf("glob matching nothing: %v", err)
	}
	for _, bad := range []string{"/usr/share/*.crt", "../x/*", "[", ""} {
		_, err := ParseRecipe("x/build.yml", []byte("debian:\n  - package: ca\n    concat:\n      /etc/b.crt: \""+bad+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), "debian[0].concat") {
			t.Errorf("glob %q: %v", bad, err)
		}
	}
}

// goCertFile is the first of the files Go's crypto/x509 reads the system roots from on Linux
// (crypto/x509/root_linux.go, certFiles[0]; also Debian's and Alpine's path).
const goCertFile = "etc/ssl/certs/ca-certificates.crt"

// TestMetadataImageHasCABundle builds images/metadata and checks that the image carries a CA
// bundle where the agent's HTTP client (Go's crypto/x509) looks for one, so that HTTPS metadata
// services (Equinix Metal) can be verified: without it every TLS handshake fails, or a caller
// would be tempted to skip verification.
func TestMetadataImageHasCABundle(t *testing.T) {
	checkCABundle(t, "../images/metadata")
}

// TestCACertificatesImageHasCABundle: images/ca-certificates, LinuxKit's init image that puts
// the bundle into the root file system, has it at the same path.
func TestCACertificatesImageHasCABundle(t *testing.T) {
	checkCABundle(t, "../images/ca-certificates")
}

func checkCABundle(t *testing.T, recipe string) {
	if testing.Short() {
		t.Skip("builds an image")
	}
	testenv.RequireTool(t, "apt-get", "apt")
	r, err := LoadRecipe(recipe)
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t, t.TempDir())
	b.WorkDir = filepath.Join(testenv.CacheDir(), "pkgbuild") // reuse fetched packages
	res, err := b.Build(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(res.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, ok := b.Cache.Lookup(ref, b.platform())
	if !ok {
		t.Fatalf("%s not in the cache", res.Ref)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var bundle []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "./") == goCertFile {
			if h.Typeflag != tar.TypeReg {
				t.Fatalf("%s is not a regular file (type %c)", goCertFile, h.Typeflag)
			}
			if bundle, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if bundle == nil {
		t.Fatalf("image %s has no /%s", res.Ref, goCertFile)
	}
	n := 0
	for rest := bundle; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			t.Errorf("certificate %d in the bundle: %v", n, err)
		}
		n++
	}
	if n < 100 { // Mozilla's store holds ~140 roots
		t.Errorf("/%s holds %d certificates, want Mozilla's roots", goCertFile, n)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(bundle) {
		t.Error("the bundle does not load as a cert pool")
	}
}
