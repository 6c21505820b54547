package pkgbuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// debInfo identifies a Debian package file as apt would download it.
type debInfo struct {
	Package  string
	Arch     string // Debian's name
	Filename string // e.g. busybox-static_1%3a1.35.0-4_amd64.deb
	SHA256   string
}

// debArch maps GOARCH names to Debian's.
var debArch = map[string]string{
	"amd64": "amd64", "arm64": "arm64", "arm": "armhf", "386": "i386",
	"ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64el",
}

// resolveDebs asks apt, in one call, which files `apt-get download PKG:ARCH...` would fetch,
// without fetching them. The result is in the order of pkgs. A foreign architecture must be
// known to dpkg (dpkg --add-architecture, apt-get update).
func resolveDebs(ctx context.Context, arch string, pkgs ...string) ([]debInfo, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	da, ok := debArch[arch]
	if !ok {
		return nil, fmt.Errorf("no Debian architecture for GOARCH %q", arch)
	}
	what := strings.Join(pkgs, " ")
	qual := map[string]string{}
	if da != debArch[runtime.GOARCH] {
		// apt names a foreign architecture's Architecture: all packages NAME:all only
		for _, p := range archAll(ctx, pkgs) {
			qual[p] = "all"
		}
	}
	args := []string{"download", "--print-uris"}
	for _, p := range pkgs {
		args = append(args, p+":"+orDefault(qual[p], da))
	}
	out, err := exec.CommandContext(ctx, "apt-get", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("apt-get download --print-uris %s: %w: %s (run apt-get update?)", what, err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("apt-get download --print-uris %s: %w", what, err)
	}
	// lines: 'URI' FILENAME SIZE SHA256:HEX; FILENAME is NAME_VERSION_ARCH.deb
	byName := map[string]debInfo{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && strings.HasPrefix(f[3], "SHA256:") {
			if strings.ContainsAny(f[1], "/\\") || strings.HasPrefix(f[1], ".") {
				return nil, fmt.Errorf("apt-get download --print-uris %s: odd file name %q", what, f[1])
			}
			name, _, _ := strings.Cut(f[1], "_")
			byName[name] = debInfo{Package: name, Arch: orDefault(qual[name], da), Filename: f[1], SHA256: strings.TrimPrefix(f[3], "SHA256:")}
		}
	}
	res := make([]debInfo, len(pkgs))
	for i, p := range pkgs {
		d, ok := byName[p]
		if !ok {
			return nil, fmt.Errorf("apt-get download --print-uris %s: no file with a SHA256 for %s in %q", what, p, out)
		}
		res[i] = d
	}
	return res, nil
}

// archAll returns those of pkgs whose candidate is an Architecture: all package. A package
// apt does not know is left out (the download that follows names it).
func archAll(ctx context.Context, pkgs []string) []string {
	// exits non-zero when one package is unknown, but still shows the others
	args := append([]string{"show", "--no-all-versions"}, pkgs...)
	out, _ := exec.CommandContext(ctx, "apt-cache", args...).Output()
	var all []string
	var name string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Package: "); ok {
			name = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Architecture: "); ok && strings.TrimSpace(v) == "all" && name != "" {
			all = append(all, name)
		}
	}
	return all
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fetchDeb returns the path of the package file in cacheDir, downloading it with apt-get
// download when absent and checking its SHA256.
func fetchDeb(ctx context.Context, cacheDir string, d debInfo) (string, error) {
	dst := filepath.Join(cacheDir, "debs", d.SHA256+".deb")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	tmp, err := os.MkdirTemp(cacheDir, "apt-")
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", d.Package, err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "apt-get", "download", d.Package+":"+d.Arch)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w\n%s", d.Package, err, out)
	}
	got := filepath.Join(tmp, d.Filename)
	if _, err := os.Stat(got); err != nil {
		m, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
		if len(m) != 1 {
			return "", fmt.Errorf("apt-get download %s: expected %s, found %v", d.Package, d.Filename, m)
		}
		got = m[0]
	}
	sum, err := fileSHA256(got)
	if err != nil {
		return "", err
	}
	if sum != d.SHA256 {
		return "", fmt.Errorf("apt-get download %s: %s has sha256 %s, apt said %s", d.Package, filepath.Base(got), sum, d.SHA256)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(got, dst); err != nil {
		return "", fmt.Errorf("fetch %s: %w", d.Package, err)
	}
	return dst, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DebFile is one entry of a Debian package's data archive.
type DebFile struct {
	Path     string // clean, relative, no leading slash
	Type     byte   // tar.TypeReg, TypeDir, TypeSymlink
	Mode     os.FileMode
	Data     []byte
	Linkname string
}

// ReadDeb reads the data archive of a .deb (ar of debian-binary, control.tar.*, data.tar.*),
// resolving hard links to copies. keep, when not nil, selects the regular files whose contents
// are read (others are listed without data).
func ReadDeb(r io.Reader, keep func(path string) bool) ([]DebFile, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, errors.New("not a Debian package (no ar magic)")
	}
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(br, hdr); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("no data.tar member")
			}
			return nil, fmt.Errorf("ar header: %w", err)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("ar member %q: bad size", name)
		}
		body := io.LimitReader(br, size)
		if strings.HasPrefix(name, "data.tar") {
			var tr io.Reader
			switch path.Ext(name) {
			case ".xz":
				x, err := xz.NewReader(body)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				tr = x
			case ".zst":
				z, err := zstd.NewReader(body)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				defer z.Close()
				tr = z
			case ".gz":
				g, err := gzip.NewReader(body)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				tr = g
			case ".tar":
				tr = body
			default:
				return nil, fmt.Errorf("%s: unknown compression", name)
			}
			return readDataTar(tr, keep)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, fmt.Errorf("ar member %q: %w", name, err)
		}
		if size%2 == 1 {
			if _, err := br.Discard(1); err != nil {
				return nil, fmt.Errorf("ar member %q: %w", name, err)
			}
		}
	}
}

func readDataTar(r io.Reader, keep func(string) bool) ([]DebFile, error) {
	tr := tar.NewReader(r)
	var out []DebFile
	regular := map[string]int{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("data.tar: %w", err)
		}
		p := path.Clean(strings.TrimPrefix(path.Clean("/"+h.Name), "/"))
		if p == "." || p == "" {
			continue
		}
		if !path.IsAbs("/"+p) || strings.HasPrefix(p, "..") {
			return nil, fmt.Errorf("data.tar: entry %q escapes the package root", h.Name)
		}
		f := DebFile{Path: p, Mode: os.FileMode(h.Mode).Perm()}
		switch h.Typeflag {
		case tar.TypeDir:
			f.Type = tar.TypeDir
		case tar.TypeReg:
			f.Type = tar.TypeReg
			if keep != nil && !keep(p) {
				break
			}
			if f.Data, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("data.tar %s: %w", p, err)
			}
			regular[p] = len(out)
		case tar.TypeSymlink:
			f.Type = tar.TypeSymlink
			f.Linkname = h.Linkname
		case tar.TypeLink:
			target := path.Clean(strings.TrimPrefix(path.Clean("/"+h.Linkname), "/"))
			i, ok := regular[target]
			if !ok {
				return nil, fmt.Errorf("data.tar: hard link %s to unknown %s", p, h.Linkname)
			}
			f.Type = tar.TypeReg
			f.Data = out[i].Data
			f.Mode = out[i].Mode
			regular[p] = len(out)
		default:
			continue // devices, fifos: not expected in packages we use
		}
		out = append(out, f)
	}
}

// addDeb unpacks files of a package into t: all of them, or those selected by d.Extract
// (exact paths, or folder prefixes ending in "/" mapped to a folder), and writes the files
// d.Concat assembles.
func addDeb(t *Tree, files []DebFile, d DebianPackage) error {
	extract, pkg := d.Extract, d.Package
	used := map[string]bool{}
	whole := len(extract) == 0 && len(d.Concat) == 0
	for _, f := range files {
		dst := ""
		if whole {
			dst = "/" + f.Path
		} else {
			for from, to := range extract {
				from = strings.TrimPrefix(from, "/")
				if strings.HasSuffix(from, "/") {
					if rest, ok := strings.CutPrefix(f.Path, strings.TrimSuffix(from, "/")); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
						dst = to + rest
						used[from] = true
					}
				} else if f.Path == from {
					dst = to
					used[from] = true
				}
			}
			if dst == "" {
				continue
			}
		}
		var err error
		switch f.Type {
		case tar.TypeDir:
			err = t.Dir(dst, f.Mode)
		case tar.TypeReg:
			err = t.File(dst, f.Mode, f.Data)
		case tar.TypeSymlink:
			err = t.Symlink(dst, f.Linkname)
		}
		if err != nil {
			return fmt.Errorf("debian package %s: %s: %w", pkg, f.Path, err)
		}
	}
	for from := range extract {
		if !used[strings.TrimPrefix(from, "/")] {
			return fmt.Errorf("debian package %s: extract: %q is not in the package", pkg, from)
		}
	}
	return addConcat(t, files, d)
}

// addConcat writes each file of d.Concat: the package's regular files matching its glob,
// sorted by path, each ending in a newline.
func addConcat(t *Tree, files []DebFile, d DebianPackage) error {
	targets := make([]string, 0, len(d.Concat))
	for to := range d.Concat {
		targets = append(targets, to)
	}
	sort.Strings(targets)
	for _, to := range targets {
		glob := d.Concat[to]
		var parts []DebFile
		for _, f := range files {
			if ok, _ := path.Match(glob, f.Path); ok && f.Type == tar.TypeReg {
				parts = append(parts, f)
			}
		}
		if len(parts) == 0 {
			return fmt.Errorf("debian package %s: concat %s: no file matches %q", d.Package, to, glob)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].Path < parts[j].Path })
		var buf bytes.Buffer
		for _, f := range parts {
			buf.Write(f.Data)
			if len(f.Data) > 0 && f.Data[len(f.Data)-1] != '\n' {
				buf.WriteByte('\n')
			}
		}
		if err := t.File(to, 0o644, buf.Bytes()); err != nil {
			return fmt.Errorf("debian package %s: concat %s: %w", d.Package, to, err)
		}
	}
	return nil
}
