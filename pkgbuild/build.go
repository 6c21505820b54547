package pkgbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/mobykit/mobykit/assembler/bundle"
	"github.com/mobykit/mobykit/assembler/image"
)

// hashVersion is bumped when the builder's output for the same inputs changes.
const hashVersion = "pkgbuild/1"

// Epoch is the time stamped on every file and on the image config.
var Epoch = time.Unix(0, 0).UTC()

// Builder builds recipes into a local image cache.
type Builder struct {
	// Cache receives the images (the assembler's OCI-layout cache).
	Cache *image.Cache
	// WorkDir keeps downloaded Debian packages and scratch modules between builds.
	WorkDir string
	// Arch is the target architecture (GOARCH names); default amd64.
	Arch string
	// Arches, when it names several architectures (sorted, distinct: see ParsePlatforms),
	// makes Build and Tag work on one multi-platform image instead: one image per
	// architecture under a single tag, Arch being ignored.
	Arches []string
	// Force rebuilds even when the cache holds the tag.
	Force bool
	// Log receives progress; default slog.Default().
	Log *slog.Logger

	// pre holds Debian packages resolved for several architectures at once (see buildAll).
	pre preResolved
}

// DefaultWorkDir returns $MOBYKIT_PKG_CACHE, else ~/.mobykit/pkgbuild.
func DefaultWorkDir() string {
	if d := os.Getenv("MOBYKIT_PKG_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "mobykit-pkgbuild")
	}
	return filepath.Join(home, ".mobykit", "pkgbuild")
}

// Result describes one built (or found) image.
type Result struct {
	// Ref is ORG/NAME:HASH.
	Ref string
	// Latest is ORG/NAME:latest, moved to this image.
	Latest string
	// Digest is the image manifest digest.
	Digest v1.Hash
	// Cached reports that the cache already held Ref and nothing was built.
	Cached bool
	// Size is the compressed size of the image's layer (of every platform's layer).
	Size int64
	// Platforms are the platforms' images of a multi-platform build, whose Digest is
	// then that of the OCI index of them; nil for a single-platform build.
	Platforms []PlatformResult
}

func (b *Builder) arch() string {
	if b.Arch == "" {
		return "amd64"
	}
	return b.Arch
}

func (b *Builder) log() *slog.Logger {
	if b.Log == nil {
		return slog.Default()
	}
	return b.Log
}

func (b *Builder) platform() v1.Platform { return v1.Platform{OS: "linux", Architecture: b.arch()} }

// resolved holds what Tag learned about the inputs, reused by Build.
type resolved struct {
	tag    string
	debs   []debInfo
	kernel *debInfo
	root   string // module root for local Go programs
}

// Tag returns the tag of the image the recipe would build: a hash of the recipe and the
// identity of every input, computed without building anything.
func (b *Builder) Tag(ctx context.Context, r *Recipe) (string, error) {
	if b.multi() {
		return b.tagAll(ctx, r)
	}
	res, err := b.resolve(ctx, r)
	if err != nil {
		return "", err
	}
	return res.tag, nil
}

func (b *Builder) resolve(ctx context.Context, r *Recipe) (*resolved, error) {
	if !r.BuildsFor(b.arch()) {
		return nil, fmt.Errorf("image %s: built only for %s (the recipe's platforms), not %s", r.Name, strings.Join(r.Platforms, ", "), b.arch())
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\narch %s\n", hashVersion, b.arch())
	h.Write(r.raw)
	res := &resolved{}
	if len(r.Go) > 0 || len(r.GoModules) > 0 {
		v, err := goVersion(ctx)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "go %s\n", v)
	}
	if len(r.Go) > 0 {
		root, err := moduleRoot(r.Dir)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		res.root = root
		for _, g := range r.Go {
			fmt.Fprintf(h, "gopkg %s\n", g.Package)
			if err := hashGoPackage(ctx, h, root, g.Package, b.arch(), false, nil); err != nil {
				return nil, fmt.Errorf("image %s: %w", r.Name, err)
			}
		}
	}
	for _, g := range r.GoModules {
		fmt.Fprintf(h, "gomod %s %s cgo=%v tags=%s\n", g.Module, g.Package, g.Cgo, strings.Join(g.Tags, ","))
		if g.Cgo {
			cc := cCompiler(b.arch())
			out, err := exec.CommandContext(ctx, cc, "--version").Output()
			if err != nil {
				return nil, fmt.Errorf("image %s: %s needs cgo for %s: %s --version: %w (apt-get install %s)", r.Name, g.Module, b.arch(), cc, err, crossPackages(b.arch()))
			}
			first, _, _ := strings.Cut(string(out), "\n")
			fmt.Fprintf(h, "cc %s\n", first)
		}
	}
	var names []string
	for _, d := range r.Debian {
		names = append(names, d.Package)
	}
	debs, err := b.pre.lookup(b.arch(), names)
	if debs == nil {
		debs, err = resolveDebs(ctx, b.arch(), names...)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r.Name, err)
	}
	res.debs = debs
	for _, di := range debs {
		fmt.Fprintf(h, "deb %s %s %s\n", di.Package, di.Filename, di.SHA256)
	}
	if r.Kernel != nil {
		kpkg, _ := r.Kernel.For(b.arch())
		pkg, err := resolveKernelPackage(ctx, kpkg, b.arch())
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		kd, err := resolveDebs(ctx, b.arch(), pkg)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		di := kd[0]
		res.kernel = &di
		fmt.Fprintf(h, "kernel %s %s %s\n", di.Package, di.Filename, di.SHA256)
	}
	for _, f := range r.Files {
		if f.Source == "" {
			continue
		}
		data, _, err := r.readSource(f.Source)
		if err != nil {
			return nil, fmt.Errorf("image %s: files: %w", r.Name, err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(h, "file %s %x\n", f.Source, sum)
	}
	res.tag = hex.EncodeToString(h.Sum(nil))[:16]
	return res, nil
}

func (b *Builder) ref(repo, tag string) (name.Reference, error) {
	ref, err := name.ParseReference(repo + ":" + tag)
	if err != nil {
		return nil, fmt.Errorf("image reference %s:%s: %w", repo, tag, err)
	}
	return ref, nil
}

// Build builds r into the cache unless the cache already holds its tag, and moves
// ORG/NAME:latest to it. With several Arches it builds every platform's image under one tag
// (see buildAll).
func (b *Builder) Build(ctx context.Context, r *Recipe) (*Result, error) {
	if b.multi() {
		return b.buildAll(ctx, r)
	}
	start := time.Now()
	res, err := b.resolve(ctx, r)
	if err != nil {
		return nil, err
	}
	ref, err := b.ref(r.Repo(), res.tag)
	if err != nil {
		return nil, err
	}
	latest, err := b.ref(r.Repo(), "latest")
	if err != nil {
		return nil, err
	}
	out := &Result{Ref: r.Repo() + ":" + res.tag, Latest: r.Repo() + ":latest"}
	img, ok := b.Cache.Lookup(ref, b.platform())
	if ok && !b.Force {
		out.Cached = true
	} else {
		if img, err = b.buildImage(ctx, r, res); err != nil {
			return nil, err
		}
		if img, err = b.Cache.Add(ref, img, b.platform(), nil); err != nil {
			return nil, fmt.Errorf("image %s: store in cache: %w", out.Ref, err)
		}
	}
	if _, err := b.Cache.Add(latest, img, b.platform(), nil); err != nil {
		return nil, fmt.Errorf("image %s: tag latest: %w", out.Ref, err)
	}
	if err := b.attachSBOM(r, res, img, ref, latest); err != nil {
		return nil, err
	}
	if out.Digest, err = img.Digest(); err != nil {
		return nil, err
	}
	if ls, err := img.Layers(); err == nil {
		for _, l := range ls {
			if s, err := l.Size(); err == nil {
				out.Size += s
			}
		}
	}
	b.log().Info("image ready", "ref", out.Ref, "digest", out.Digest, "cached", out.Cached, "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// buildImage assembles the image of r.
func (b *Builder) buildImage(ctx context.Context, r *Recipe, res *resolved) (v1.Image, error) {
	if b.WorkDir == "" {
		b.WorkDir = DefaultWorkDir()
	}
	if err := os.MkdirAll(b.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	tmp, err := os.MkdirTemp(b.WorkDir, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	t := NewTree()
	b.log().Info("building image", "image", r.Repo(), "tag", res.tag)

	for i, d := range r.Debian {
		p, err := fetchDeb(ctx, b.WorkDir, res.debs[i])
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		files, err := readDebFile(p, nil)
		if err != nil {
			return nil, fmt.Errorf("image %s: debian package %s: %w", r.Name, d.Package, err)
		}
		if err := addDeb(t, files, d.For(b.arch())); err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
	}
	if r.Kernel != nil {
		if err := b.addKernel(ctx, t, r, res); err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
	}
	for _, g := range r.GoModules {
		dir, err := scratchModule(ctx, b.WorkDir, g.Module)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		pkg := g.Package
		if pkg == "" {
			pkg, _, _ = strings.Cut(g.Module, "@")
		}
		bin, err := buildGo(ctx, dir, pkg, b.arch(), g.Cgo, g.Tags, tmp)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		if err := t.File(g.Path, 0o755, bin); err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
	}
	for _, g := range r.Go {
		bin, err := buildGo(ctx, res.root, g.Package, b.arch(), false, nil, tmp)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		if err := t.File(g.Path, 0o755, bin); err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
	}
	if err := addFiles(t, r); err != nil {
		return nil, fmt.Errorf("image %s: %w", r.Name, err)
	}
	return b.imageFromTree(t, r)
}

func readDebFile(p string, keep func(string) bool) ([]DebFile, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadDeb(f, keep)
}

func (b *Builder) addKernel(ctx context.Context, t *Tree, r *Recipe, res *resolved) error {
	p, err := fetchDeb(ctx, b.WorkDir, *res.kernel)
	if err != nil {
		return err
	}
	files, err := readDebFile(p, func(p string) bool {
		return strings.HasPrefix(p, "boot/vmlinuz-") || strings.HasPrefix(p, "boot/System.map-") ||
			(strings.HasPrefix(p, "lib/modules/") && (strings.HasSuffix(p, ".ko") || strings.HasSuffix(p, "/modules.builtin")))
	})
	if err != nil {
		return fmt.Errorf("kernel package %s: %w", res.kernel.Package, err)
	}
	_, modules := r.Kernel.For(b.arch())
	kp, err := selectKernel(files, modules)
	if err != nil {
		return fmt.Errorf("kernel package %s: %w", res.kernel.Package, err)
	}
	ktar, err := kernelTar(kp, Epoch)
	if err != nil {
		return err
	}
	if err := t.File("/kernel", 0o644, kp.Kernel); err != nil {
		return err
	}
	if err := t.File("/kernel.tar", 0o644, ktar); err != nil {
		return err
	}
	if r.Kernel.SystemMap && kp.SystemMap != nil {
		if err := t.File("/System.map", 0o644, kp.SystemMap); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(kp.Modules))
	for _, m := range kp.Modules {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	b.log().Info("kernel", "version", kp.Version, "modules", strings.Join(names, " "), "kernel.tar", len(ktar))
	return nil
}

func addFiles(t *Tree, r *Recipe) error {
	for _, f := range r.Files {
		var mode fs.FileMode
		if f.Mode != "" {
			m, _ := strconv.ParseUint(f.Mode, 8, 32)
			mode = fs.FileMode(m)
		}
		var err error
		switch {
		case f.Directory:
			if mode == 0 {
				mode = 0o755
			}
			err = t.Dir(f.Path, mode)
		case f.Symlink != "":
			err = t.Symlink(f.Path, f.Symlink)
		case f.Source != "":
			data, srcMode, rerr := r.readSource(f.Source)
			if rerr != nil {
				return fmt.Errorf("files: %w", rerr)
			}
			if mode == 0 {
				mode = 0o644
				if srcMode&0o111 != 0 {
					mode = 0o755
				}
			}
			err = t.File(f.Path, mode, data)
		default:
			if mode == 0 {
				mode = 0o644
			}
			err = t.File(f.Path, mode, []byte(f.Contents))
		}
		if err != nil {
			return fmt.Errorf("files %s: %w", f.Path, err)
		}
	}
	return nil
}

// imageFromTree makes a one-layer image with a fixed creation time.
func (b *Builder) imageFromTree(t *Tree, r *Recipe) (v1.Image, error) {
	data, err := t.Tar(Epoch)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", r.Name, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", r.Name, err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "mobykit pkg build " + r.Repo(), Comment: "mobykit pkgbuild"},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = b.arch()
	cf.OS = "linux"
	cf.Created = v1.Time{Time: Epoch}
	cf.Config.Entrypoint = r.Config.Entrypoint
	cf.Config.Cmd = r.Config.Cmd
	cf.Config.Env = r.Config.Env
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cf.Config.WorkingDir = r.Config.WorkingDir
	label, err := r.labelJSON()
	if err != nil {
		return nil, err
	}
	if label != "" {
		cf.Config.Labels = map[string]string{bundle.ConfigLabel: label}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", r.Name, err)
	}
	return img, nil
}

// readSource reads a `files: source:` confined to the recipe folder: neither the path nor a
// symbolic link on the way may lead out of it.
func (r *Recipe) readSource(name string) ([]byte, fs.FileMode, error) {
	root, err := os.OpenRoot(r.Dir)
	if err != nil {
		return nil, 0, err
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("source %s (in %s): %w", name, r.Dir, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("source %s (in %s): not a regular file", name, r.Dir)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, 0, fmt.Errorf("source %s (in %s): %w", name, r.Dir, err)
	}
	return data, st.Mode(), nil
}
