package sysinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Runtime is LinuxKit's runtime.json: what init does around runc for one container.
type Runtime struct {
	Cgroups    []string    `json:"cgroups,omitempty"`
	Mounts     []Mount     `json:"mounts,omitempty"`
	Mkdir      []string    `json:"mkdir,omitempty"`
	Interfaces []Interface `json:"interfaces,omitempty"`
	BindNS     Namespaces  `json:"bindNS,omitempty"`
	Namespace  string      `json:"namespace,omitempty"`
}

// Mount is an OCI runtime-spec mount, done in the host namespace before the container starts.
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type,omitempty"`
	Source      string   `json:"source,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Namespaces names paths the container's namespaces are bind mounted to.
type Namespaces struct {
	Cgroup string `json:"cgroup,omitempty"`
	Ipc    string `json:"ipc,omitempty"`
	Mnt    string `json:"mnt,omitempty"`
	Net    string `json:"net,omitempty"`
	Pid    string `json:"pid,omitempty"`
	User   string `json:"user,omitempty"`
	Uts    string `json:"uts,omitempty"`
}

// Interface is a network interface created in, or moved into, the container's namespace.
type Interface struct {
	Name         string `json:"name,omitempty"`
	Add          string `json:"add,omitempty"`
	Peer         string `json:"peer,omitempty"`
	CreateInRoot bool   `json:"createInRoot"`
}

// ReadRuntime reads bundle/runtime.json; a missing file is an empty runtime.
func ReadRuntime(bundle string) (*Runtime, error) {
	var rt Runtime
	data, err := os.ReadFile(filepath.Join(bundle, "runtime.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &rt, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &rt); err != nil {
		return nil, fmt.Errorf("%s/runtime.json: %w", bundle, err)
	}
	return &rt, nil
}

// PrepareFilesystem does the part of the runtime config needed before `runc create`, in
// LinuxKit's order: mounts (creating each destination, and the upperdir and workdir of
// overlays), then mkdir, then cgroups. The assembler describes the container's root in the
// mounts (a bind of rootfs/, or a tmpfs on tmp/ and an overlay of lower/ on rootfs/); for
// bundles whose runtime.json does not, the root is prepared as older LinuxKit did.
func PrepareFilesystem(bundle string, rt *Runtime) error {
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	rootDescribed := false
	for _, m := range rt.Mounts {
		if filepath.Clean(m.Destination) == rootfs {
			rootDescribed = true
		}
		if err := doMount(m); err != nil {
			return err
		}
	}
	for _, d := range rt.Mkdir {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("runtime mkdir %s: %w", d, err)
		}
	}
	for _, cg := range rt.Cgroups {
		if strings.Contains(cg, "..") {
			return fmt.Errorf("runtime cgroups: bad name %q", cg)
		}
		if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup", cg), 0o755); err != nil {
			return fmt.Errorf("runtime cgroups %s: %w", cg, err)
		}
	}
	if rootDescribed || mounted(rootfs) {
		return nil
	}
	lower := filepath.Join(bundle, "lower")
	if _, err := os.Stat(lower); err != nil {
		if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", rootfs, err)
		}
		return nil
	}
	tmp := filepath.Join(bundle, "tmp")
	return doMounts([]Mount{
		{Destination: tmp, Type: "tmpfs", Source: "tmpfs", Options: []string{"size=10%"}},
		{Destination: tmp, Options: []string{"remount", "private"}},
		{Destination: rootfs, Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + lower, "upperdir=" + filepath.Join(tmp, "upper"), "workdir=" + filepath.Join(tmp, "work")}},
	})
}

func doMounts(ms []Mount) error {
	for _, m := range ms {
		if err := doMount(m); err != nil {
			return err
		}
	}
	return nil
}

func doMount(m Mount) error {
	if m.Destination == "" || !filepath.IsAbs(m.Destination) {
		return fmt.Errorf("runtime mount: destination %q must be absolute", m.Destination)
	}
	flags, prop, data := ParseMountOptions(m.Options)
	if err := os.MkdirAll(m.Destination, 0o755); err != nil {
		return fmt.Errorf("runtime mount %s: %w", m.Destination, err)
	}
	for _, o := range m.Options {
		k, v, _ := strings.Cut(o, "=")
		if m.Type == "overlay" && (k == "upperdir" || k == "workdir") {
			if err := os.MkdirAll(v, 0o755); err != nil {
				return fmt.Errorf("runtime mount %s: %s: %w", m.Destination, k, err)
			}
		}
	}
	if flags&unix.MS_REMOUNT != 0 && m.Type == "" && flags&^unix.MS_REMOUNT == 0 && len(prop) > 0 {
		flags = 0 // a pure propagation change ("remount,private"), done below
	}
	if flags != 0 || m.Type != "" || len(prop) == 0 {
		if err := unix.Mount(m.Source, m.Destination, m.Type, flags, data); err != nil {
			return fmt.Errorf("runtime mount %s (%s from %s): %w", m.Destination, m.Type, m.Source, err)
		}
	}
	for _, p := range prop {
		if err := unix.Mount("", m.Destination, "", p, ""); err != nil {
			return fmt.Errorf("runtime mount %s propagation: %w", m.Destination, err)
		}
	}
	return nil
}

// PrepareProcess does the part of the runtime config that needs the created (not yet
// started) container: network interfaces, then namespace bind mounts.
func PrepareProcess(pid int, rt *Runtime) error {
	for _, iface := range rt.Interfaces {
		if err := setupInterface(pid, iface); err != nil {
			return err
		}
	}
	for _, b := range []struct{ ns, path string }{
		{"cgroup", rt.BindNS.Cgroup}, {"ipc", rt.BindNS.Ipc}, {"mnt", rt.BindNS.Mnt},
		{"net", rt.BindNS.Net}, {"pid", rt.BindNS.Pid}, {"user", rt.BindNS.User}, {"uts", rt.BindNS.Uts},
	} {
		if b.path == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(b.path), 0o755); err != nil {
			return fmt.Errorf("bindNS %s: %w", b.ns, err)
		}
		f, err := os.OpenFile(b.path, os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return fmt.Errorf("bindNS %s at %s: %w", b.ns, b.path, err)
		}
		f.Close()
		src := fmt.Sprintf("/proc/%d/ns/%s", pid, b.ns)
		if err := unix.Mount(src, b.path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bindNS %s at %s: %w", b.ns, b.path, err)
		}
	}
	return nil
}

// Cleanup undoes PrepareFilesystem's root mounts (best effort), for onboot containers.
func Cleanup(bundle string) {
	rootfs := filepath.Join(bundle, "rootfs")
	unix.Unmount(rootfs, unix.MNT_DETACH)
	if _, err := os.Stat(filepath.Join(bundle, "lower")); err == nil {
		unix.Unmount(filepath.Join(bundle, "tmp"), unix.MNT_DETACH)
	}
}
