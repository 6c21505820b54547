package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mobykit/mobykit/assembler/spec"
)

// ConfigLabel is the image label holding default per-image config.
const ConfigLabel = "org.mobyproject.config"

// Bundle is what one container needs in the initramfs, besides the image
// contents themselves. All paths are relative to the initramfs root.
type Bundle struct {
	// Config is the OCI runtime config.json, to write at Path/config.json.
	Config []byte
	// Runtime is LinuxKit's runtime.json, to write at Path/runtime.json.
	Runtime []byte
	// ReadOnly reports whether the root is read-only: the image is
	// unpacked into Path/rootfs; otherwise into Path/lower, with Path/tmp and
	// Path/rootfs as the overlay's mount points (described in Runtime).
	ReadOnly bool
	// Path is the bundle directory (Options.Path).
	Path string
	// RootDir is where the caller must unpack the image: Path/rootfs or
	// Path/lower; "" when Options.SharedRoot reuses another copy.
	RootDir string
	// Dirs are empty directories the caller must create (mount points),
	// sorted.
	Dirs []string
	// Spec and RuntimeConfig are the decoded forms of Config and Runtime.
	Spec          *specs.Spec
	RuntimeConfig spec.Runtime
}

// Options tune Generate.
type Options struct {
	// Path is the bundle directory relative to the initramfs root, as
	// LinuxKit names it: containers/onboot/NNN-name,
	// containers/onshutdown/NNN-name (NNN is the %03d index in the section)
	// or containers/services/name. It is required: runtime.json refers to it.
	Path string
	// SharedRoot, when not empty, is the directory (relative to the
	// initramfs root) where an earlier container already unpacked the same
	// image reference (its Bundle.RootDir); LinuxKit then binds or overlays
	// that copy instead of unpacking the image again.
	SharedRoot string
	// IDMap resolves uid/gid names to numbers (spec.Moby.IDMap).
	IDMap map[string]uint32
	// Volumes are the spec's volumes by name (spec.Moby.VolumeMap): binds
	// and bind mounts whose source is not an absolute path name a volume
	// and are pointed at its merged directory.
	Volumes map[string]*spec.Volume
}

// Generate builds config.json and runtime.json for img exactly as
// LinuxKit's ConfigToOCI and ImageBundle do: each field comes from the YAML
// if set there, else from the image's org.mobyproject.config label, else
// from the image config (command, env, cwd), else LinuxKit's default.
func Generate(img *spec.Image, imgCfg v1.Config, opts Options) (*Bundle, error) {
	where := describe(img)
	if opts.Path == "" || path.IsAbs(opts.Path) || path.Clean(opts.Path) != opts.Path || strings.HasPrefix(opts.Path, "../") {
		return nil, fmt.Errorf("%s: bundle path %q must be relative and clean", where, opts.Path)
	}
	label, err := Label(img.Image, imgCfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	yml, err := resolveVolumes(img, opts.Volumes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	oci, rt, err := toOCI(&yml.ImageConfig, label, imgCfg, opts.IDMap)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	b := &Bundle{ReadOnly: oci.Root.Readonly, Path: opts.Path, Spec: oci}
	b.rootfs(&rt, opts)
	b.RuntimeConfig = rt
	if b.Config, err = json.MarshalIndent(oci, "", "    "); err != nil {
		return nil, fmt.Errorf("%s: encode config.json: %w", where, err)
	}
	if b.Runtime, err = json.MarshalIndent(rt, "", "    "); err != nil {
		return nil, fmt.Errorf("%s: encode runtime.json: %w", where, err)
	}
	return b, nil
}

// describe names a container in errors: its place in the spec, if known,
// and its image.
func describe(img *spec.Image) string {
	if p := img.Pos().String(); p != "" {
		return fmt.Sprintf("%s: image %s", p, img.Image)
	}
	return fmt.Sprintf("%s: image %s", img.Name, img.Image)
}

// Label parses the image's org.mobyproject.config label; an image without
// one gives an empty config.
func Label(ref string, imgCfg v1.Config) (*spec.ImageConfig, error) {
	s := imgCfg.Labels[ConfigLabel]
	if s == "" {
		return &spec.ImageConfig{}, nil
	}
	c, err := spec.ParseLabel(fmt.Sprintf("image %s label %s", ref, ConfigLabel), []byte(s))
	if err != nil {
		return nil, fmt.Errorf("invalid %s label: %w", ConfigLabel, err)
	}
	return c, nil
}

// rootfs prepends the root filesystem mounts to the runtime config and
// works out what the caller must unpack and create.
func (b *Bundle) rootfs(rt *spec.Runtime, opts Options) {
	p := opts.Path
	rootfs := path.Join(p, "rootfs")
	var mounts []specs.Mount
	if b.ReadOnly {
		root := rootfs
		if opts.SharedRoot != "" {
			root = opts.SharedRoot
			b.Dirs = append(b.Dirs, rootfs)
		} else {
			b.RootDir = rootfs
		}
		// bind from self or the shared copy: runc prefers a mount point
		mounts = []specs.Mount{{Source: "/" + root, Destination: "/" + rootfs, Options: []string{"bind"}}}
	} else {
		root := path.Join(p, "lower")
		if opts.SharedRoot != "" {
			root = opts.SharedRoot
		} else {
			b.RootDir = root
		}
		tmp := path.Join(p, "tmp")
		b.Dirs = append(b.Dirs, rootfs, tmp)
		mounts = []specs.Mount{
			{Source: "tmpfs", Type: "tmpfs", Destination: "/" + tmp},
			// private: nothing else should see the temporary layers
			{Destination: "/" + tmp, Options: []string{"remount", "private"}},
			{Source: "overlay", Type: "overlay", Destination: "/" + rootfs, Options: []string{
				"lowerdir=/" + root, "upperdir=/" + path.Join(tmp, "upper"), "workdir=/" + path.Join(tmp, "work"),
			}},
		}
	}
	sort.Strings(b.Dirs)
	all := append(mounts, *rt.Mounts...)
	rt.Mounts = &all
}

// resolveVolumes points binds and bind mounts that name a volume at the
// volume's merged directory, refusing read-write use of read-only volumes.
func resolveVolumes(img *spec.Image, vols map[string]*spec.Volume) (*spec.Image, error) {
	out := *img
	lookup := func(src string, opts []string, what string) (string, error) {
		v := vols[src]
		if v == nil {
			return "", fmt.Errorf("%s: volume %q not found (a host path must be absolute)", what, src)
		}
		if v.ReadOnly && !spec.ReadOnlyOptions(opts) {
			return "", fmt.Errorf("%s: volume %q is read-only, but is bound read-write", what, src)
		}
		return v.MergedDir(), nil
	}
	if img.Mounts != nil {
		ms := append([]specs.Mount(nil), *img.Mounts...)
		for i, m := range ms {
			if m.Type != "bind" || strings.HasPrefix(m.Source, "/") {
				continue
			}
			dir, err := lookup(m.Source, m.Options, fmt.Sprintf("mounts[%d]", i))
			if err != nil {
				return nil, err
			}
			ms[i].Source = dir
		}
		out.Mounts = &ms
	}
	for _, f := range []struct {
		name string
		list **[]string
	}{{"binds", &out.Binds}, {"binds.add", &out.BindsAdd}} {
		if *f.list == nil {
			continue
		}
		bs := append([]string(nil), **f.list...)
		for i, b := range bs {
			parts := strings.Split(b, ":")
			if strings.HasPrefix(parts[0], "/") {
				continue
			}
			var opts []string
			if len(parts) == 3 {
				opts = strings.Split(parts[2], ",")
			}
			dir, err := lookup(parts[0], opts, fmt.Sprintf("%s[%d]", f.name, i))
			if err != nil {
				return nil, err
			}
			parts[0] = dir
			bs[i] = strings.Join(parts, ":")
		}
		*f.list = &bs
	}
	return &out, nil
}

// pick returns the YAML value if set, else the label's.
func pick[T any](label, yml *T) *T {
	if yml != nil {
		return yml
	}
	return label
}

func strs(label, yml *[]string) []string {
	if p := pick(label, yml); p != nil {
		return *p
	}
	return []string{}
}

func str(label, yml string, dflt string) string {
	if yml != "" {
		return yml
	}
	if label != "" {
		return label
	}
	return dflt
}

// merged returns LinuxKit's "label plus the YAML's .add" list.
func merged(label, add *[]string) *[]string {
	switch {
	case label == nil && add == nil:
		return nil
	case add == nil:
		return label
	case label == nil:
		return add
	}
	out := append(append([]string(nil), *label...), *add...)
	return &out
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func toOCI(yml, label *spec.ImageConfig, ic v1.Config, ids map[string]uint32) (*specs.Spec, spec.Runtime, error) {
	var rt spec.Runtime
	// LinuxKit runs entrypoint+cmd together, as Docker would
	var args []string
	if len(ic.Entrypoint)+len(ic.Cmd) > 0 {
		args = append(append(args, ic.Entrypoint...), ic.Cmd...)
	}
	if p := pick(label.Command, yml.Command); p != nil {
		args = *p
	}
	env := ic.Env
	if p := pick(label.Env, yml.Env); p != nil {
		env = *p
	}
	// an empty cwd is not allowed in OCI
	cwd := str(label.Cwd, yml.Cwd, str("", ic.WorkingDir, "/"))
	readonly := false
	if p := pick(label.Readonly, yml.Readonly); p != nil {
		readonly = *p
	}

	// defaults match Docker's; /dev/shm and /dev/mqueue are left out
	devOpts := []string{"nosuid", "strictatime", "mode=755", "size=65536k"}
	sysOpts := []string{"nosuid", "noexec", "nodev"}
	if readonly {
		devOpts = append(devOpts, "ro")
		sysOpts = append(sysOpts, "ro")
	}
	mounts := map[string]specs.Mount{
		"/proc":          {Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "nodev", "noexec", "relatime"}},
		"/dev":           {Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: devOpts},
		"/dev/pts":       {Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		"/sys":           {Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		"/sys/fs/cgroup": {Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	// precedence: tmpfs, then binds, then mounts, later ones replacing
	// earlier ones at the same destination
	for _, t := range strs(label.Tmpfs, yml.Tmpfs) {
		m, err := spec.ParseTmpfs(t)
		if err != nil {
			return nil, rt, err
		}
		mounts[m.Destination] = m
	}
	binds := merged(label.Binds, yml.BindsAdd)
	if yml.Binds != nil {
		binds = yml.Binds
	}
	if binds != nil {
		for _, b := range *binds {
			src, dst, opts, err := spec.ParseBind(b)
			if err != nil {
				return nil, rt, err
			}
			mounts[dst] = specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
		}
	}
	if p := pick(label.Mounts, yml.Mounts); p != nil {
		for _, m := range *p {
			n, err := spec.NormalizeMount(m)
			if err != nil {
				return nil, rt, err
			}
			mounts[n.Destination] = n
		}
	}
	mountList := make([]specs.Mount, 0, len(mounts))
	for _, m := range mounts {
		mountList = append(mountList, m)
	}
	// sorted by destination: deterministic, and /dev before /dev/pts
	sort.Slice(mountList, func(i, j int) bool { return mountList[i].Destination < mountList[j].Destination })

	var namespaces []specs.LinuxNamespace
	ns := func(t specs.LinuxNamespaceType, v string, none bool) {
		if v == "host" || v == "root" {
			return
		}
		if v == "new" || (none && v == "none") {
			v = ""
		}
		namespaces = append(namespaces, specs.LinuxNamespace{Type: t, Path: v})
	}
	// net, ipc, uts and user: the host's unless asked; pid: a new one
	ns(specs.NetworkNamespace, str(label.Net, yml.Net, "root"), true)
	ns(specs.IPCNamespace, str(label.Ipc, yml.Ipc, "root"), false)
	ns(specs.UTSNamespace, str(label.Uts, yml.Uts, "root"), false)
	ns(specs.PIDNamespace, str(label.Pid, yml.Pid, ""), false)
	ns(specs.UserNamespace, str(label.Userns, yml.Userns, "root"), false)
	namespaces = append(namespaces,
		specs.LinuxNamespace{Type: specs.MountNamespace},
		specs.LinuxNamespace{Type: specs.CgroupNamespace})

	capsIn := merged(label.Capabilities, yml.CapabilitiesAdd)
	if yml.Capabilities != nil {
		capsIn = yml.Capabilities
	}
	var capList []string
	if capsIn != nil {
		capList = *capsIn
	}
	caps, err := spec.ExpandCapabilities(capList)
	if err != nil {
		return nil, rt, err
	}
	caps = dedupe(caps)
	ambient, err := spec.ExpandCapabilities(strs(label.Ambient, yml.Ambient))
	if err != nil {
		return nil, rt, err
	}
	boundingSet := map[string]bool{}
	for _, c := range caps {
		boundingSet[c] = true
	}
	for _, c := range ambient {
		boundingSet[c] = true
	}
	var bounding []string
	for c := range boundingSet {
		bounding = append(bounding, c)
	}
	sort.Strings(bounding)

	var rlimits []specs.POSIXRlimit
	for _, r := range strs(label.Rlimits, yml.Rlimits) {
		l, err := spec.ParseRlimit(r)
		if err != nil {
			return nil, rt, err
		}
		rlimits = append(rlimits, l)
	}

	id := func(label, yml *any, field string) (uint32, error) {
		var v any
		if p := pick(label, yml); p != nil {
			v = *p
		}
		n, err := spec.IDNumeric(v, ids)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		return n, nil
	}
	uid, err := id(label.UID, yml.UID, "uid")
	if err != nil {
		return nil, rt, err
	}
	gid, err := id(label.GID, yml.GID, "gid")
	if err != nil {
		return nil, rt, err
	}
	var additional []uint32
	if p := pick(label.AdditionalGids, yml.AdditionalGids); p != nil {
		for _, g := range *p {
			n, err := spec.IDNumeric(g, ids)
			if err != nil {
				return nil, rt, fmt.Errorf("additionalGids: %w", err)
			}
			additional = append(additional, n)
		}
	}

	noNewPrivs := false
	if p := pick(label.NoNewPrivileges, yml.NoNewPrivileges); p != nil {
		noNewPrivs = *p
	}

	oci := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: specs.User{UID: uid, GID: gid, AdditionalGids: additional},
			Args: args,
			Env:  env,
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:    bounding,
				Effective:   caps,
				Inheritable: bounding,
				Permitted:   bounding,
				Ambient:     ambient,
			},
			Rlimits:         rlimits,
			NoNewPrivileges: noNewPrivs,
			OOMScoreAdj:     pick(label.OOMScoreAdj, yml.OOMScoreAdj),
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: readonly},
		Hostname: str(label.Hostname, yml.Hostname, ""),
		Mounts:   mountList,
	}
	if p := pick(label.Annotations, yml.Annotations); p != nil {
		oci.Annotations = *p
	}

	var resources specs.LinuxResources
	if p := pick(label.Resources, yml.Resources); p != nil {
		resources = *p
		resources.Devices = append([]specs.LinuxDeviceCgroup(nil), p.Devices...)
	}
	var devices []specs.LinuxDevice
	if p := pick(label.Devices, yml.Devices); p != nil {
		for _, d := range *p {
			if d.Path == "all" {
				// a whole class of devices in the device cgroup allow list
				resources.Devices = append(resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Access: "rwm"})
				continue
			}
			mode, err := strconv.ParseUint(d.Mode, 8, 32)
			if err != nil {
				return nil, rt, fmt.Errorf("device %s: cannot parse mode %q as octal: %w", d.Path, d.Mode, err)
			}
			fm := os.FileMode(mode)
			major, minor := d.Major, d.Minor
			devices = append(devices, specs.LinuxDevice{Path: d.Path, Type: d.Type, Major: major, Minor: minor, FileMode: &fm})
			// the device must also be allowed in the device cgroup
			resources.Devices = append(resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: "rwm"})
		}
	}
	linux := &specs.Linux{
		Resources:         &resources,
		Namespaces:        namespaces,
		Devices:           devices,
		CgroupsPath:       deref(pick(label.CgroupsPath, yml.CgroupsPath)),
		RootfsPropagation: deref(pick(label.RootfsPropagation, yml.RootfsPropagation)),
		MaskedPaths:       strs(label.MaskedPaths, yml.MaskedPaths),
		ReadonlyPaths:     strs(label.ReadonlyPaths, yml.ReadonlyPaths),
	}
	if p := pick(label.UIDMappings, yml.UIDMappings); p != nil {
		linux.UIDMappings = *p
	}
	if p := pick(label.GIDMappings, yml.GIDMappings); p != nil {
		linux.GIDMappings = *p
	}
	if p := pick(label.Sysctl, yml.Sysctl); p != nil {
		linux.Sysctl = *p
	}
	oci.Linux = linux

	rt = runtimeConfig(label.Runtime, yml.Runtime)
	return oci, rt, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// runtimeConfig merges the runtime sections field by field, YAML over
// label, with every field present (as LinuxKit writes runtime.json).
func runtimeConfig(label, yml *spec.Runtime) spec.Runtime {
	if label == nil {
		label = &spec.Runtime{}
	}
	if yml == nil {
		yml = &spec.Runtime{}
	}
	cgroups := strs(label.Cgroups, yml.Cgroups)
	mkdir := strs(label.Mkdir, yml.Mkdir)
	mounts := []specs.Mount{}
	if p := pick(label.Mounts, yml.Mounts); p != nil {
		mounts = append(mounts, *p...)
	}
	ifaces := []spec.Interface{}
	if p := pick(label.Interfaces, yml.Interfaces); p != nil {
		ifaces = append(ifaces, *p...)
	}
	s := func(label, yml *string) *string {
		v := deref(pick(label, yml))
		return &v
	}
	return spec.Runtime{
		Cgroups:    &cgroups,
		Mounts:     &mounts,
		Mkdir:      &mkdir,
		Interfaces: &ifaces,
		BindNS: spec.Namespaces{
			Cgroup: s(label.BindNS.Cgroup, yml.BindNS.Cgroup),
			Ipc:    s(label.BindNS.Ipc, yml.BindNS.Ipc),
			Mnt:    s(label.BindNS.Mnt, yml.BindNS.Mnt),
			Net:    s(label.BindNS.Net, yml.BindNS.Net),
			Pid:    s(label.BindNS.Pid, yml.BindNS.Pid),
			User:   s(label.BindNS.User, yml.BindNS.User),
			Uts:    s(label.BindNS.Uts, yml.BindNS.Uts),
		},
		Namespace: s(label.Namespace, yml.Namespace),
	}
}
