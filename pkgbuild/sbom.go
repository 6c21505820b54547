package pkgbuild

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/sbom"
)

// scratchModulePath is the main module of the scratch modules gomodules are built in: not
// part of what an image holds.
const scratchModulePath = "mobykit.invalid/pkgbuild"

// attachSBOM stores, under every ref, the SBOM of img (built from r) as an attestation
// manifest, unless the cache holds one for img already (an image built before SBOMs existed
// gets one without being rebuilt).
func (b *Builder) attachSBOM(r *Recipe, res *resolved, img v1.Image, refs ...name.Reference) error {
	d, err := img.Digest()
	if err != nil {
		return err
	}
	var att v1.Image
	for _, ref := range refs {
		if _, ok := b.Cache.Attestation(ref, d); ok && !b.Force {
			continue
		}
		if att == nil {
			doc, err := b.SBOM(r, res, img)
			if err != nil {
				return fmt.Errorf("image %s: SBOM: %w", r.Name, err)
			}
			subject := "pkg:docker/" + r.Repo() + "@" + res.tag + "?platform=" + url.QueryEscape(b.platform().String())
			if att, err = sbom.Attestation(doc, subject, d); err != nil {
				return fmt.Errorf("image %s: SBOM: %w", r.Name, err)
			}
		}
		if err := b.Cache.AddAttestation(ref, d, att, sbom.MaxSize); err != nil {
			return fmt.Errorf("image %s: SBOM: %w", r.Name, err)
		}
	}
	return nil
}

// SBOM returns the SPDX 2.3 JSON document of img, built from r with the inputs res: its Debian
// packages (kernel included) with versions and the SHA256 of the .deb, and the Go modules of
// its Go programs as their build information records them (read from the binaries in img),
// with versions and go.sum hashes. The same image always gives the same bytes: the creation
// time is the image's, IDs and namespace derive from the content.
func (b *Builder) SBOM(r *Recipe, res *resolved, img v1.Image) ([]byte, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	doc := &sbom.Document{
		Version: sbom.Version, DataLicense: sbom.DataLicense, ID: sbom.DocumentID, Name: r.Repo(),
		CreationInfo: sbom.CreationInfo{Created: sbom.Created(cf.Created.Time), Creators: sbom.Creators},
	}
	seen := map[string]bool{}
	add := func(p sbom.Package) {
		if seen[p.ID] {
			return
		}
		seen[p.ID] = true
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, sbom.Relationship{Element: sbom.DocumentID, Type: "DESCRIBES", Related: p.ID})
	}
	debs := append([]debInfo(nil), res.debs...)
	if res.kernel != nil {
		debs = append(debs, *res.kernel)
	}
	for _, d := range debs {
		p, err := debPackage(d)
		if err != nil {
			return nil, err
		}
		add(p)
	}
	var paths []string
	for _, g := range r.Go {
		paths = append(paths, g.Path)
	}
	for _, g := range r.GoModules {
		paths = append(paths, g.Path)
	}
	bins, err := readImageFiles(img, paths)
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		data, ok := bins[layerPath(p)]
		if !ok {
			return nil, fmt.Errorf("go program %s: not in the image", p)
		}
		bi, err := buildinfo.Read(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("go program %s: build information: %w", p, err)
		}
		for _, pk := range goPackages(bi) {
			add(pk)
		}
	}
	return doc.Finish(r.Repo())
}

// debPackage describes a Debian package file: NAME_VERSION_ARCH.deb, VERSION escaped as in
// the archive's file names (1%3a1.35.0-4 is 1:1.35.0-4).
func debPackage(d debInfo) (sbom.Package, error) {
	// ARCH is the package's own: "all" for architecture-independent ones.
	rest, ok := strings.CutPrefix(d.Filename, d.Package+"_")
	rest, ok2 := strings.CutSuffix(rest, ".deb")
	i := strings.LastIndexByte(rest, '_')
	if !ok || !ok2 || i <= 0 {
		return sbom.Package{}, fmt.Errorf("debian package %s: file name %q is not %s_VERSION_ARCH.deb", d.Package, d.Filename, d.Package)
	}
	rest, arch := rest[:i], rest[i+1:]
	version, err := url.PathUnescape(rest)
	if err != nil || version == "" {
		return sbom.Package{}, fmt.Errorf("debian package %s: version in %q: %v", d.Package, d.Filename, err)
	}
	purl := "pkg:deb/debian/" + d.Package + "@" + purlEscape(version) + "?arch=" + arch
	return sbom.Package{
		ID: sbom.ID("deb", d.Package, version, arch, d.SHA256), Name: d.Package, Version: version,
		FileName: d.Filename, Supplier: "Organization: Debian", DownloadLocation: "NOASSERTION",
		Checksums:        []sbom.Checksum{{Algorithm: "SHA256", Value: d.SHA256}},
		LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
		ExternalRefs: []sbom.ExternalRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: purl}},
	}, nil
}

// purlEscape percent-encodes what a purl version may not hold literally.
func purlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_~+:", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// goPackages describes the modules of a Go binary: its main module (unless it is a scratch
// module), every dependency (the replacement when replaced) and the standard library.
func goPackages(bi *buildinfo.BuildInfo) []sbom.Package {
	var out []sbom.Package
	mod := func(m *debug.Module) {
		if m.Replace != nil {
			m = m.Replace
		}
		purl := "pkg:golang/" + m.Path
		p := sbom.Package{
			ID: sbom.ID("go", m.Path, m.Version, m.Sum), Name: m.Path, DownloadLocation: "NOASSERTION",
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
		}
		if m.Version != "" && m.Version != "(devel)" {
			p.Version = m.Version
			purl += "@" + purlEscape(m.Version)
			p.DownloadLocation = "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip"
		}
		if s, ok := strings.CutPrefix(m.Sum, "h1:"); ok {
			if raw, err := base64.StdEncoding.DecodeString(s); err == nil && len(raw) == 32 {
				p.Checksums = []sbom.Checksum{{Algorithm: "SHA256", Value: hex.EncodeToString(raw)}}
				p.Comment = "go.sum " + m.Sum
			}
		}
		p.ExternalRefs = []sbom.ExternalRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: purl}}
		out = append(out, p)
	}
	if bi.Main.Path != "" && bi.Main.Path != scratchModulePath {
		m := bi.Main
		mod(&m)
	}
	deps := append([]*debug.Module(nil), bi.Deps...)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	for _, d := range deps {
		mod(d)
	}
	v := strings.TrimPrefix(bi.GoVersion, "go")
	out = append(out, sbom.Package{
		ID: sbom.ID("go", "stdlib", v), Name: "stdlib", Version: v, DownloadLocation: "https://go.dev/dl/",
		LicenseConcluded: "NOASSERTION", LicenseDeclared: "BSD-3-Clause", CopyrightText: "NOASSERTION",
		ExternalRefs: []sbom.ExternalRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: "pkg:golang/stdlib@" + v}},
	})
	return out
}

func layerPath(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// readImageFiles returns the contents of the named regular files of img's layers (a later
// layer's wins).
func readImageFiles(img v1.Image, paths []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(paths) == 0 {
		return out, nil
	}
	want := map[string]bool{}
	for _, p := range paths {
		want[layerPath(p)] = true
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rc.Close()
				return nil, fmt.Errorf("image layer: %w", err)
			}
			n := layerPath(h.Name)
			if h.Typeflag != tar.TypeReg || !want[n] {
				continue
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				rc.Close()
				return nil, fmt.Errorf("image layer: %s: %w", n, err)
			}
			out[n] = data
		}
		rc.Close()
	}
	return out, nil
}
