package pkgbuild

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"
)

// resolveKernelPackage turns a meta-package (linux-image-cloud-amd64) into the versioned
// package it depends on, for arch (GOARCH name); a versioned package is returned unchanged.
func resolveKernelPackage(ctx context.Context, pkg, arch string) (string, error) {
	da, ok := debArch[arch]
	if !ok {
		return "", fmt.Errorf("no Debian architecture for GOARCH %q", arch)
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", pkg+":"+da).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s:%s: %w (run apt-get update?)", pkg, da, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if p, ok := strings.CutPrefix(line, "Depends: "); ok && strings.HasPrefix(p, "linux-image-") {
			// apt-cache names a foreign architecture's package NAME:ARCH
			p = strings.TrimSuffix(p, ":"+da)
			if p != pkg {
				return p, nil
			}
		}
	}
	return pkg, nil
}

// Module is a kernel module found in a kernel package.
type Module struct {
	Name    string   // module name, dashes turned to underscores
	Path    string   // relative to lib/modules/VERSION, e.g. kernel/fs/overlayfs/overlay.ko
	Depends []string // direct dependencies (module names)
	Data    []byte
}

func modName(file string) string {
	b := path.Base(file)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(b, ext) {
			b = strings.TrimSuffix(b, ext)
			break
		}
	}
	return strings.ReplaceAll(b, "-", "_")
}

// moduleDepends reads the depends= field of an uncompressed module's .modinfo section.
func moduleDepends(data []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// KernelParts is what a kernel image holds.
type KernelParts struct {
	Version   string
	Kernel    []byte // vmlinuz
	SystemMap []byte
	Modules   []*Module // the selected modules and their dependencies, sorted by path
	Builtin   []byte    // modules.builtin
}

// selectKernel picks the kernel, and the named modules with their dependencies, out of a
// kernel package's files.
func selectKernel(files []DebFile, want []string) (*KernelParts, error) {
	kp := &KernelParts{}
	all := map[string]*Module{}
	builtin := map[string]bool{}
	for _, f := range files {
		switch {
		case strings.HasPrefix(f.Path, "boot/vmlinuz-") && f.Type == tar.TypeReg:
			kp.Kernel = f.Data
			kp.Version = strings.TrimPrefix(f.Path, "boot/vmlinuz-")
		case strings.HasPrefix(f.Path, "boot/System.map-") && f.Type == tar.TypeReg:
			kp.SystemMap = f.Data
		}
	}
	if kp.Kernel == nil {
		return nil, fmt.Errorf("no boot/vmlinuz-* in the kernel package")
	}
	prefix := "lib/modules/" + kp.Version + "/"
	for _, f := range files {
		rel, ok := strings.CutPrefix(f.Path, prefix)
		if !ok || f.Type != tar.TypeReg {
			continue
		}
		if rel == "modules.builtin" {
			kp.Builtin = f.Data
			for _, l := range strings.Split(string(f.Data), "\n") {
				if l != "" {
					builtin[modName(l)] = true
				}
			}
			continue
		}
		if !strings.HasSuffix(rel, ".ko") {
			continue
		}
		all[modName(rel)] = &Module{Name: modName(rel), Path: rel, Data: f.Data}
	}
	picked := map[string]*Module{}
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if picked[name] != nil {
			return nil
		}
		m := all[name]
		if m == nil {
			if builtin[name] {
				return nil
			}
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) is not in the kernel package", name, from)
			}
			return fmt.Errorf("module %s is neither in the kernel package nor built in", name)
		}
		if m.Data == nil {
			return fmt.Errorf("module %s: contents not read", name)
		}
		deps, err := moduleDepends(m.Data)
		if err != nil {
			return fmt.Errorf("module %s (%s): %w", name, m.Path, err)
		}
		m.Depends = deps
		picked[name] = m
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, w := range want {
		if err := visit(w, ""); err != nil {
			return nil, err
		}
	}
	for _, m := range picked {
		kp.Modules = append(kp.Modules, m)
	}
	sort.Slice(kp.Modules, func(i, j int) bool { return kp.Modules[i].Path < kp.Modules[j].Path })
	return kp, nil
}

// ModulesDep renders modules.dep in depmod's format: each module followed by all its
// transitive dependencies, a module always listed before the modules it needs, so that loading
// the list from its end to its start satisfies every dependency.
func ModulesDep(mods []*Module) string {
	byName := map[string]*Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	var b strings.Builder
	for _, m := range mods {
		// post-order DFS gives deps before dependants; reverse it for depmod's order.
		var order []string
		seen := map[string]bool{m.Name: true}
		var dfs func(n string)
		dfs = func(n string) {
			deps := append([]string(nil), byName[n].Depends...)
			sort.Strings(deps)
			for _, d := range deps {
				if seen[d] || byName[d] == nil {
					continue
				}
				seen[d] = true
				dfs(d)
				order = append(order, byName[d].Path)
			}
		}
		dfs(m.Name)
		b.WriteString(m.Path + ":")
		for i := len(order) - 1; i >= 0; i-- {
			b.WriteString(" " + order[i])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// kernelTar writes kernel.tar: lib/modules/VERSION/{kernel/…, modules.dep, modules.builtin,
// modules.order}, deterministic.
func kernelTar(kp *KernelParts, mtime time.Time) ([]byte, error) {
	t := NewTree()
	base := "/lib/modules/" + kp.Version + "/"
	var order strings.Builder
	for _, m := range kp.Modules {
		if err := t.File(base+m.Path, 0o644, m.Data); err != nil {
			return nil, err
		}
		order.WriteString(m.Path + "\n")
	}
	if err := t.File(base+"modules.dep", 0o644, []byte(ModulesDep(kp.Modules))); err != nil {
		return nil, err
	}
	if err := t.File(base+"modules.order", 0o644, []byte(order.String())); err != nil {
		return nil, err
	}
	if kp.Builtin != nil {
		if err := t.File(base+"modules.builtin", 0o644, kp.Builtin); err != nil {
			return nil, err
		}
	}
	return t.Tar(mtime)
}
