package spec

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// volumeNameRE is LinuxKit's rule for volume names.
var volumeNameRE = regexp.MustCompile(`^[a-z0-9_-]*$`)

// VolumesDir is where LinuxKit lays out volumes in the image.
const VolumesDir = "/containers/volumes"

// BaseDir is the volume's directory in the image.
func (v *Volume) BaseDir() string { return path.Join(VolumesDir, v.Name) }

// LowerDir holds the volume's image contents (if any).
func (v *Volume) LowerDir() string { return path.Join(v.BaseDir(), "lower") }

// TmpDir is the mount point of the overlay's upper and work dirs.
func (v *Volume) TmpDir() string { return path.Join(v.BaseDir(), "tmp") }

// MergedDir is what containers bind: the mounted volume.
func (v *Volume) MergedDir() string { return path.Join(v.BaseDir(), "merged") }

// Pos returns where the volume was defined.
func (v *Volume) Pos() Pos { return v.pos }

// CheckRef checks an image reference the way the resolver will parse it.
func CheckRef(ref string) error {
	if ref == "" {
		return errors.New("empty image reference")
	}
	if _, err := name.ParseReference(ref); err != nil {
		return err
	}
	return nil
}

// checkVolumeFormat accepts LinuxKit's volume formats that mobykit
// builds: "filesystem" (the default). LinuxKit's schema also has "oci" (the
// image kept as an OCI layout), which mobykit does not write.
func checkVolumeFormat(f string) error {
	switch f {
	case "", "filesystem":
		return nil
	case "oci":
		return fmt.Errorf("volume format %q is not supported by mobykit (only filesystem)", f)
	}
	return fmt.Errorf("unknown volume format %q (filesystem or oci)", f)
}

func uniqueNames(section string, imgs []*Image) error {
	seen := map[string]*Image{}
	for _, img := range imgs {
		if first, dup := seen[img.Name]; dup {
			return img.pos.errorf("duplicate %s name %q, first defined at %s", section, img.Name, first.pos)
		}
		seen[img.Name] = img
	}
	return nil
}

// checkName rejects names that cannot be a directory name under
// containers/<section>/.
func checkName(img *Image) error {
	n := img.Name
	if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
		return img.pos.errorf("invalid name %q: must be usable as a directory name", n)
	}
	return nil
}

// Validate checks the merged spec: names (unique services; onboot and
// onshutdown may repeat a name, as in LinuxKit), volume names, image
// references, files entries, and the per-image fields that can be checked
// without the image (binds, tmpfs, rlimits, capabilities, devices, volume
// references). Every error names the file, line and field.
func (m *Moby) Validate() error {
	if m.Kernel.Image != "" {
		if err := CheckRef(m.Kernel.Image); err != nil {
			return m.kernelPos.wrap(err, "bad image reference %q", m.Kernel.Image)
		}
	}
	for i, ref := range m.Init {
		p := Pos{Field: fmt.Sprintf("init[%d]", i)}
		if i < len(m.initPos) {
			p = m.initPos[i]
		}
		if err := CheckRef(ref); err != nil {
			return p.wrap(err, "bad image reference %q", ref)
		}
	}
	vols := map[string]*Volume{}
	for _, v := range m.Volumes {
		if v.Name == "" || !volumeNameRE.MatchString(v.Name) {
			return v.pos.errorf("invalid volume name %q: must match %s", v.Name, volumeNameRE)
		}
		if first, dup := vols[v.Name]; dup {
			return v.pos.errorf("duplicate volume name %q, first defined at %s", v.Name, first.pos)
		}
		vols[v.Name] = v
		if err := checkVolumeFormat(v.Format); err != nil {
			q := v.pos
			q.Field += ".format"
			return q.errorf("%v", err)
		}
		if v.Image != "" {
			if err := CheckRef(v.Image); err != nil {
				return v.pos.wrap(err, "bad image reference %q", v.Image)
			}
		}
	}
	ids := m.IDMap()
	for _, sec := range []struct {
		name string
		list []*Image
	}{{"onboot", m.Onboot}, {"onshutdown", m.Onshutdown}, {"services", m.Services}} {
		for _, img := range sec.list {
			if err := img.checkIDs(ids); err != nil {
				return err
			}
			if err := checkName(img); err != nil {
				return err
			}
			if err := CheckRef(img.Image); err != nil {
				return img.imagePos.wrap(err, "bad image reference %q", img.Image)
			}
			if err := img.ImageConfig.check(img.pos, vols); err != nil {
				return err
			}
		}
	}
	// Services run side by side under their names: LinuxKit refuses a name
	// used twice there. Onboot and onshutdown containers run one at a time
	// from containers/SECTION/NNN-name, so LinuxKit's own examples repeat
	// names there (dm-crypt-loop's two mounts).
	if err := uniqueNames("services", m.Services); err != nil {
		return err
	}
	for i := range m.Files {
		if err := m.Files[i].check(ids); err != nil {
			return err
		}
	}
	return nil
}

// check validates the fields of an image config that need no image.
// vols, when not nil, are the spec's volumes binds and mounts may name.
func (c *ImageConfig) check(p Pos, vols map[string]*Volume) error {
	at := func(field string) Pos { q := p; q.Field = p.Field + "." + field; return q }
	for _, f := range []struct {
		field string
		list  *[]string
	}{{"binds", c.Binds}, {"binds.add", c.BindsAdd}} {
		if f.list == nil {
			continue
		}
		for i, b := range *f.list {
			q := at(fmt.Sprintf("%s[%d]", f.field, i))
			src, _, opts, err := ParseBind(b)
			if err != nil {
				return q.wrap(err, "bad bind")
			}
			if vols != nil && !strings.HasPrefix(src, "/") {
				if err := checkVolumeUse(q, vols, src, opts); err != nil {
					return err
				}
			}
		}
	}
	if c.Mounts != nil && vols != nil {
		for i, mt := range *c.Mounts {
			if mt.Type == "bind" && !strings.HasPrefix(mt.Source, "/") {
				if err := checkVolumeUse(at(fmt.Sprintf("mounts[%d]", i)), vols, mt.Source, mt.Options); err != nil {
					return err
				}
			}
		}
	}
	if c.Mounts != nil {
		for i, mt := range *c.Mounts {
			if _, err := NormalizeMount(mt); err != nil {
				return at(fmt.Sprintf("mounts[%d]", i)).wrap(err, "bad mount")
			}
		}
	}
	if c.Tmpfs != nil {
		for i, t := range *c.Tmpfs {
			if _, err := ParseTmpfs(t); err != nil {
				return at(fmt.Sprintf("tmpfs[%d]", i)).wrap(err, "bad tmpfs")
			}
		}
	}
	if c.Rlimits != nil {
		for i, r := range *c.Rlimits {
			if _, err := ParseRlimit(r); err != nil {
				return at(fmt.Sprintf("rlimits[%d]", i)).wrap(err, "bad rlimit")
			}
		}
	}
	for _, f := range []struct {
		field string
		list  *[]string
	}{{"capabilities", c.Capabilities}, {"capabilities.add", c.CapabilitiesAdd}, {"ambient", c.Ambient}} {
		if f.list == nil {
			continue
		}
		if _, err := ExpandCapabilities(*f.list); err != nil {
			return at(f.field).wrap(err, "bad capabilities")
		}
	}
	if c.Devices != nil {
		for i, d := range *c.Devices {
			if d.Path == "all" {
				continue
			}
			if _, err := strconv.ParseUint(d.Mode, 8, 32); err != nil {
				return at(fmt.Sprintf("devices[%d].mode", i)).wrap(err, "device mode must be octal")
			}
		}
	}
	for _, f := range []struct {
		field string
		v     *any
	}{{"uid", c.UID}, {"gid", c.GID}} {
		if f.v != nil {
			if err := checkIDType(*f.v); err != nil {
				return at(f.field).wrap(err, "bad id")
			}
		}
	}
	if c.Runtime != nil && c.Runtime.Mounts != nil {
		for i, mt := range *c.Runtime.Mounts {
			if mt.Destination == "" {
				return at(fmt.Sprintf("runtime.mounts[%d]", i)).errorf("destination is required")
			}
		}
	}
	return nil
}

// checkIDs resolves the uid, gid and additionalGids the YAML sets (they
// win over any label), so an unknown name is reported with its place.
func (img *Image) checkIDs(ids map[string]uint32) error {
	at := func(field string) Pos { q := img.pos; q.Field += "." + field; return q }
	for _, f := range []struct {
		field string
		v     *any
	}{{"uid", img.UID}, {"gid", img.GID}} {
		if f.v == nil {
			continue
		}
		if _, err := IDNumeric(*f.v, ids); err != nil {
			return at(f.field).wrap(err, "bad id")
		}
	}
	if img.AdditionalGids != nil {
		for i, g := range *img.AdditionalGids {
			if _, err := IDNumeric(g, ids); err != nil {
				return at(fmt.Sprintf("additionalGids[%d]", i)).wrap(err, "bad id")
			}
		}
	}
	return nil
}

func checkIDType(v any) error {
	switch v.(type) {
	case nil, int, string:
		return nil
	}
	return fmt.Errorf("must be a name or a number, not %T", v)
}

func checkVolumeUse(p Pos, vols map[string]*Volume, src string, opts []string) error {
	v := vols[src]
	if v == nil {
		return p.errorf("volume %q is not defined in volumes (a host path must be absolute)", src)
	}
	if v.ReadOnly && !ReadOnlyOptions(opts) {
		return p.errorf("volume %q is read-only, but is bound read-write (add the ro option)", src)
	}
	return nil
}

// ReadOnlyOptions reports whether mount options make a mount read-only: of "ro" and "rw",
// the first one found decides; neither means read-write.
func ReadOnlyOptions(opts []string) bool {
	for _, o := range opts {
		switch o {
		case "ro":
			return true
		case "rw":
			return false
		}
	}
	return false
}

// ParseBind splits a LinuxKit bind "src:dst[:opt,opt]" into the mount
// source, destination and options. Without options LinuxKit binds
// "rw,rbind,rshared"; with options it appends "rbind".
func ParseBind(b string) (src, dst string, opts []string, err error) {
	parts := strings.Split(b, ":")
	if len(parts) < 2 {
		return "", "", nil, fmt.Errorf("cannot parse bind %q: missing ':'", b)
	}
	if len(parts) > 3 {
		return "", "", nil, fmt.Errorf("cannot parse bind %q: too many ':'", b)
	}
	opts = []string{"rw", "rbind", "rshared"}
	if len(parts) == 3 {
		opts = append(strings.Split(parts[2], ","), "rbind")
	}
	return parts[0], parts[1], opts, nil
}

// ParseTmpfs parses a LinuxKit tmpfs entry "dst[:opt,opt]".
func ParseTmpfs(t string) (specs.Mount, error) {
	parts := strings.Split(t, ":")
	if len(parts) > 2 {
		return specs.Mount{}, fmt.Errorf("cannot parse tmpfs %q: too many ':'", t)
	}
	var opts []string
	if len(parts) == 2 {
		opts = strings.Split(parts[1], ",")
	}
	return specs.Mount{Destination: parts[0], Type: "tmpfs", Source: "tmpfs", Options: opts}, nil
}

// NormalizeMount applies LinuxKit's mount defaults: a missing type comes
// from a well-known source (proc, sysfs, …) or is tmpfs for /dev, a missing
// source is the type, a missing destination is the type's usual place.
func NormalizeMount(m specs.Mount) (specs.Mount, error) {
	tp, src, dst := m.Type, m.Source, m.Destination
	if tp == "" {
		switch src {
		case "mqueue", "devpts", "proc", "sysfs", "cgroup":
			tp = src
		}
	}
	if tp == "" && dst == "/dev" {
		tp = "tmpfs"
	}
	if tp == "" {
		return m, fmt.Errorf("mount for destination %q is missing type", dst)
	}
	if src == "" {
		src = tp
	}
	if dst == "" {
		switch tp {
		case "proc":
			dst = "/proc"
		case "devpts":
			dst = "/dev/pts"
		case "sysfs":
			dst = "/sys"
		case "cgroup":
			dst = "/sys/fs/cgroup"
		case "mqueue":
			dst = "/dev/mqueue"
		}
	}
	if dst == "" {
		return m, fmt.Errorf("mount of type %q is missing destination", tp)
	}
	return specs.Mount{Destination: dst, Type: tp, Source: src, Options: m.Options}, nil
}

var rlimitNames = map[string]bool{
	"RLIMIT_CPU": true, "RLIMIT_FSIZE": true, "RLIMIT_DATA": true, "RLIMIT_STACK": true,
	"RLIMIT_CORE": true, "RLIMIT_RSS": true, "RLIMIT_NPROC": true, "RLIMIT_NOFILE": true,
	"RLIMIT_MEMLOCK": true, "RLIMIT_AS": true, "RLIMIT_LOCKS": true, "RLIMIT_SIGPENDING": true,
	"RLIMIT_MSGQUEUE": true, "RLIMIT_NICE": true, "RLIMIT_RTPRIO": true, "RLIMIT_RTTIME": true,
}

// ParseRlimit parses LinuxKit's "name,soft,hard" rlimit syntax: the name
// with or without RLIMIT_, any case; soft and hard a number or "unlimited".
func ParseRlimit(s string) (specs.POSIXRlimit, error) {
	rs := strings.SplitN(s, ",", 3)
	if len(rs) != 3 {
		return specs.POSIXRlimit{}, fmt.Errorf("cannot parse rlimit %q: want name,soft,hard", s)
	}
	limit := strings.ToUpper(strings.TrimSpace(rs[0]))
	if !strings.HasPrefix(limit, "RLIMIT_") {
		limit = "RLIMIT_" + limit
	}
	if !rlimitNames[limit] {
		return specs.POSIXRlimit{}, fmt.Errorf("unknown rlimit %q", strings.TrimSpace(rs[0]))
	}
	soft, err := parseLimit(rs[1])
	if err != nil {
		return specs.POSIXRlimit{}, err
	}
	hard, err := parseLimit(rs[2])
	if err != nil {
		return specs.POSIXRlimit{}, err
	}
	return specs.POSIXRlimit{Type: limit, Soft: soft, Hard: hard}, nil
}

func parseLimit(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "unlimited") {
		return ^uint64(0), nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cannot parse rlimit value %q as a number or unlimited: %w", s, err)
	}
	return v, nil
}

// AllCapabilities lists every capability LinuxKit knows, in kernel order
// (the order "all" expands to).
var AllCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

var knownCaps = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range AllCapabilities {
		m[c] = true
	}
	return m
}()

// ExpandCapabilities applies LinuxKit's rules: a single "all" is every
// capability, a single "none" is none; otherwise each entry must be a known
// capability. Names are accepted in any case and without the CAP_ prefix
// and returned in canonical form (CAP_NET_ADMIN).
func ExpandCapabilities(caps []string) ([]string, error) {
	if len(caps) == 1 {
		switch strings.ToLower(caps[0]) {
		case "none":
			return []string{}, nil
		case "all":
			return append([]string(nil), AllCapabilities...), nil
		}
	}
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		u := strings.ToUpper(strings.TrimSpace(c))
		if !strings.HasPrefix(u, "CAP_") {
			u = "CAP_" + u
		}
		if !knownCaps[u] {
			return nil, fmt.Errorf("unknown capability %q", c)
		}
		out = append(out, u)
	}
	return out, nil
}

// IDNumeric resolves a uid or gid as LinuxKit does: a number, "" or "root"
// (0), or the name of a container in ids (see Moby.IDMap).
func IDNumeric(v any, ids map[string]uint32) (uint32, error) {
	switch id := v.(type) {
	case nil:
		return 0, nil
	case int:
		if id < 0 || int64(id) > int64(^uint32(0)) {
			return 0, fmt.Errorf("id %d out of range", id)
		}
		return uint32(id), nil
	case string:
		if id == "" || id == "root" {
			return 0, nil
		}
		if n, ok := ids[id]; ok {
			return n, nil
		}
		return 0, fmt.Errorf("cannot find id %q: not root, a number, or the name of a container in the spec", id)
	}
	return 0, fmt.Errorf("bad type %T for uid or gid", v)
}
