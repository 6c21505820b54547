package pkgbuild

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/mobykit/mobykit/assembler/spec"
)

// RecipeFile is the name of the recipe inside an image folder.
const RecipeFile = "build.yml"

// DefaultOrg is the repository prefix of image references when a recipe names none.
const DefaultOrg = "mobykit"

// Recipe is one images/NAME/build.yml.
type Recipe struct {
	// Name is the image name; the reference is Org/Name:TAG. Default: the folder name.
	Name string `yaml:"name"`
	// Org is the repository prefix; default "mobykit".
	Org string `yaml:"org"`
	// Go lists programs of this repository, built static (CGO_ENABLED=0, -trimpath).
	Go []GoProgram `yaml:"go"`
	// GoModules lists programs fetched from the Go module proxy and built there.
	GoModules []GoModule `yaml:"gomodules"`
	// Debian lists Debian packages fetched with apt-get download and unpacked.
	Debian []DebianPackage `yaml:"debian"`
	// Kernel, when set, makes this a kernel image: /kernel, /kernel.tar.
	Kernel *KernelSource `yaml:"kernel"`
	// Files are plain files, directories and symlinks added last (they win).
	Files []File `yaml:"files"`
	// Config is the image config.
	Config ImageConfig `yaml:"config"`
	// Platforms restricts the architectures (GOARCH names) the image is built for, e.g.
	// [amd64] for x86 boot code; default every architecture asked for.
	Platforms []string `yaml:"platforms"`
	// Label is the org.mobyproject.config label: LinuxKit per-image defaults (capabilities,
	// binds, net, …), with the same keys as a spec's image entry. Checked against the spec schema.
	Label map[string]any `yaml:"label"`

	// Dir is the folder holding the recipe (set by LoadRecipe).
	Dir string `yaml:"-"`
	// raw is the recipe file's bytes, part of the input hash.
	raw []byte
}

// GoProgram is a main package of the enclosing module.
type GoProgram struct {
	// Package is the import path or a path relative to the module root ("./cmd/init").
	Package string `yaml:"package"`
	// Path is where the binary goes in the image.
	Path string `yaml:"path"`
}

// GoModule is a main package from the module proxy, built in a scratch module.
type GoModule struct {
	// Module is module@version, e.g. github.com/opencontainers/runc@v1.4.0.
	Module string `yaml:"module"`
	// Package is the main package to build; default the module path.
	Package string `yaml:"package"`
	// Path is where the binary goes in the image.
	Path string `yaml:"path"`
	// Cgo builds with CGO_ENABLED=1 and links statically (-extldflags -static).
	Cgo bool `yaml:"cgo"`
	// Tags are build tags.
	Tags []string `yaml:"tags"`
}

// DebianPackage is a package from the Debian archive.
type DebianPackage struct {
	// Package is the package name (the candidate version apt knows is used and recorded).
	Package string `yaml:"package"`
	// Extract maps paths inside the package to paths in the image. Empty (and no Concat): the
	// whole package.
	Extract map[string]string `yaml:"extract"`
	// Concat maps a file in the image to a glob (path.Match) of files inside the package: the
	// matching regular files, in name order, are concatenated into it (mode 0644). This is how
	// a maintainer script's output is made without running it, e.g. the CA bundle that
	// update-ca-certificates builds from ca-certificates' usr/share/ca-certificates/mozilla/*.crt.
	Concat map[string]string `yaml:"concat"`
	// Arches adds Extract entries for one target architecture (GOARCH names), for paths only
	// one architecture has (amd64's lib64/, arm64's lib/ld-linux-aarch64.so.1).
	Arches map[string]map[string]string `yaml:"arches"`
}

// MultiarchVar in an Extract path stands for the target's multiarch triplet
// (x86_64-linux-gnu, aarch64-linux-gnu): lib/{multiarch}/.
const MultiarchVar = "{multiarch}"

// For returns d for arch: {multiarch} replaced in Extract and Concat, and the arch's own
// extract entries added.
func (d DebianPackage) For(arch string) DebianPackage {
	r := strings.NewReplacer(MultiarchVar, crossTriplets[arch])
	out := d
	out.Arches = nil
	if len(d.Extract) > 0 || len(d.Arches[arch]) > 0 {
		out.Extract = map[string]string{}
		for _, m := range []map[string]string{d.Extract, d.Arches[arch]} {
			for from, to := range m {
				out.Extract[r.Replace(from)] = r.Replace(to)
			}
		}
	}
	if len(d.Concat) > 0 {
		out.Concat = map[string]string{}
		for to, glob := range d.Concat {
			out.Concat[r.Replace(to)] = r.Replace(glob)
		}
	}
	return out
}

// KernelSource selects a Debian kernel package and the modules kept in kernel.tar.
type KernelSource struct {
	// Package is the kernel package or a meta-package that depends on one
	// (linux-image-cloud-amd64).
	Package string `yaml:"package"`
	// Modules are module names (without .ko); their dependencies are added.
	Modules []string `yaml:"modules"`
	// SystemMap adds /System.map.
	SystemMap bool `yaml:"systemMap"`
	// Arches overrides Package and Modules for a target architecture (GOARCH names, e.g.
	// arm64: linux-image-cloud-arm64, whose modules differ: no ata_piix, virtio_mmio).
	// An architecture not listed uses Package and Modules.
	Arches map[string]KernelArch `yaml:"arches"`
}

// KernelArch is the kernel package and modules of one architecture.
type KernelArch struct {
	Package string   `yaml:"package"`
	Modules []string `yaml:"modules"`
}

// For returns the package and modules to use for arch.
func (k *KernelSource) For(arch string) (pkg string, modules []string) {
	if a, ok := k.Arches[arch]; ok {
		return a.Package, a.Modules
	}
	return k.Package, k.Modules
}

// File is a plain file, directory or symlink.
type File struct {
	Path      string `yaml:"path"`
	Contents  string `yaml:"contents"`
	Source    string `yaml:"source"`
	Symlink   string `yaml:"symlink"`
	Directory bool   `yaml:"directory"`
	// Mode is octal; default 0644 for files (0755 when the source is executable), 0755 for dirs.
	Mode string `yaml:"mode"`
}

// ImageConfig is the subset of the OCI image config a recipe sets.
type ImageConfig struct {
	Entrypoint []string `yaml:"entrypoint"`
	Cmd        []string `yaml:"cmd"`
	Env        []string `yaml:"env"`
	WorkingDir string   `yaml:"workingDir"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)

// LoadRecipe reads dir/build.yml strictly.
func LoadRecipe(dir string) (*Recipe, error) {
	file := filepath.Join(dir, RecipeFile)
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read recipe: %w", err)
	}
	r, err := ParseRecipe(file, data)
	if err != nil {
		return nil, err
	}
	r.Dir = dir
	if r.Name == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("recipe %s: %w", file, err)
		}
		r.Name = filepath.Base(abs)
	}
	if !nameRE.MatchString(r.Name) {
		return nil, fmt.Errorf("recipe %s: name %q is not a valid image name", file, r.Name)
	}
	return r, nil
}

// ParseRecipe parses and validates a recipe; file names it in errors.
func ParseRecipe(file string, data []byte) (*Recipe, error) {
	var r Recipe
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("recipe %s: %w", file, err)
	}
	r.raw = data
	if r.Org == "" {
		r.Org = DefaultOrg
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("recipe %s: %w", file, err)
	}
	return &r, nil
}

// extractMap checks a package's extract map (path in the package -> path in the image), field
// naming it in errors: no ".." in the package paths, and clean image paths.
func extractMap(field string, m map[string]string) error {
	for from, to := range m {
		if strings.Contains(from, "..") {
			return fmt.Errorf("%s: %q must not contain \"..\"", field, from)
		}
		if err := imagePath(fmt.Sprintf("%s[%s]", field, from), to); err != nil {
			return err
		}
	}
	return nil
}

// imagePath checks that p is an absolute, clean path inside the image.
func imagePath(field, p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("%s: %q must be an absolute clean path below /", field, p)
	}
	return nil
}

func (r *Recipe) validate() error {
	if r.Name != "" && !nameRE.MatchString(r.Name) {
		return fmt.Errorf("name: %q is not a valid image name", r.Name)
	}
	for i, g := range r.Go {
		if g.Package == "" {
			return fmt.Errorf("go[%d].package: required", i)
		}
		if err := imagePath(fmt.Sprintf("go[%d].path", i), g.Path); err != nil {
			return err
		}
	}
	for i, g := range r.GoModules {
		mod, ver, ok := strings.Cut(g.Module, "@")
		if !ok || mod == "" || ver == "" {
			return fmt.Errorf("gomodules[%d].module: %q must be module@version", i, g.Module)
		}
		if err := imagePath(fmt.Sprintf("gomodules[%d].path", i), g.Path); err != nil {
			return err
		}
	}
	for i, d := range r.Debian {
		if d.Package == "" {
			return fmt.Errorf("debian[%d].package: required", i)
		}
		if err := extractMap(fmt.Sprintf("debian[%d].extract", i), d.Extract); err != nil {
			return err
		}
		for a, m := range d.Arches {
			if _, ok := debArch[a]; !ok {
				return fmt.Errorf("debian[%d].arches.%s: unknown architecture (want a GOARCH name: amd64, arm64, ...)", i, a)
			}
			if err := extractMap(fmt.Sprintf("debian[%d].arches.%s", i, a), m); err != nil {
				return err
			}
		}
		for to, glob := range d.Concat {
			if err := imagePath(fmt.Sprintf("debian[%d].concat", i), to); err != nil {
				return err
			}
			if _, err := path.Match(glob, ""); err != nil || glob == "" || strings.HasPrefix(glob, "/") || strings.Contains(glob, "..") {
				return fmt.Errorf("debian[%d].concat[%s]: %q must be a glob of paths inside the package (no leading /, no ..)", i, to, glob)
			}
		}
	}
	for i, a := range r.Platforms {
		if _, ok := debArch[a]; !ok {
			return fmt.Errorf("platforms[%d]: %q is not a known architecture (GOARCH names: amd64, arm64, ...)", i, a)
		}
	}
	if r.Kernel != nil && r.Kernel.Package == "" {
		return errors.New("kernel.package: required")
	}
	if r.Kernel != nil {
		for a, k := range r.Kernel.Arches {
			if _, ok := debArch[a]; !ok {
				return fmt.Errorf("kernel.arches.%s: unknown architecture (want a GOARCH name: amd64, arm64, ...)", a)
			}
			if k.Package == "" {
				return fmt.Errorf("kernel.arches.%s.package: required", a)
			}
		}
	}
	for i, f := range r.Files {
		if err := imagePath(fmt.Sprintf("files[%d].path", i), f.Path); err != nil {
			return err
		}
		n := 0
		if f.Contents != "" {
			n++
		}
		if f.Source != "" {
			n++
			if filepath.IsAbs(f.Source) || strings.HasPrefix(filepath.Clean(f.Source), "..") {
				return fmt.Errorf("files[%d].source: %q must be relative, inside the recipe folder", i, f.Source)
			}
		}
		if f.Symlink != "" {
			n++
		}
		if f.Directory {
			n++
		}
		if n > 1 {
			return fmt.Errorf("files[%d] (%s): set only one of contents, source, symlink, directory", i, f.Path)
		}
		if f.Mode != "" {
			if _, err := strconv.ParseUint(f.Mode, 8, 32); err != nil {
				return fmt.Errorf("files[%d].mode: %q is not octal", i, f.Mode)
			}
		}
	}
	if r.Label != nil {
		if _, err := r.labelJSON(); err != nil {
			return err
		}
	}
	return nil
}

// labelJSON returns the org.mobyproject.config label, checked against the spec's per-image
// fields so that a typo fails here rather than at `mobykit build`.
func (r *Recipe) labelJSON() (string, error) {
	if len(r.Label) == 0 {
		return "", nil
	}
	b, err := json.Marshal(r.Label)
	if err != nil {
		return "", fmt.Errorf("label: %w", err)
	}
	var cfg spec.ImageConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return "", fmt.Errorf("label: not a valid org.mobyproject.config: %w", err)
	}
	return string(b), nil
}

// BuildsFor reports whether the recipe builds for arch.
func (r *Recipe) BuildsFor(arch string) bool {
	if len(r.Platforms) == 0 {
		return true
	}
	for _, a := range r.Platforms {
		if a == arch {
			return true
		}
	}
	return false
}

// Repo returns ORG/NAME.
func (r *Recipe) Repo() string { return r.Org + "/" + r.Name }
