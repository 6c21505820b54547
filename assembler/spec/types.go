package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Moby is a whole spec: LinuxKit's top-level keys.
type Moby struct {
	// Kernel is the kernel image and its command line.
	Kernel KernelConfig `yaml:"kernel,omitempty" json:"kernel,omitempty"`
	// Init images are flattened, in order, onto the root of the initramfs.
	Init []string `yaml:"init,omitempty" json:"init,omitempty"`
	// Onboot containers run in order, to completion, at boot.
	Onboot []*Image `yaml:"onboot,omitempty" json:"onboot,omitempty"`
	// Onshutdown containers run in order at shutdown.
	Onshutdown []*Image `yaml:"onshutdown,omitempty" json:"onshutdown,omitempty"`
	// Services are long running containers, started in parallel.
	Services []*Image `yaml:"services,omitempty" json:"services,omitempty"`
	// Files are extra files written into the initramfs.
	Files []File `yaml:"files,omitempty" json:"files,omitempty"`
	// Volumes are named volumes containers can bind or mount.
	Volumes []*Volume `yaml:"volumes,omitempty" json:"volumes,omitempty"`

	// Trust is LinuxKit's deprecated content-trust section. It is accepted so
	// that old specs still parse, and ignored.
	Trust *Trust `yaml:"trust,omitempty" json:"trust,omitempty"`

	// kernelPos and initPos record where the kernel image and each init
	// image were defined, for error messages.
	kernelPos Pos
	initPos   []Pos
}

// Trust is LinuxKit's deprecated `trust:` section (ignored).
type Trust struct {
	Image []string `yaml:"image,omitempty" json:"image,omitempty"`
	Org   []string `yaml:"org,omitempty" json:"org,omitempty"`
}

// KernelConfig is the `kernel:` section.
type KernelConfig struct {
	// Image is the kernel image reference.
	Image string `yaml:"image,omitempty" json:"image,omitempty"`
	// Cmdline is the kernel command line.
	Cmdline string `yaml:"cmdline,omitempty" json:"cmdline,omitempty"`
	// Binary is the name of the kernel file in the image; default "kernel".
	Binary string `yaml:"binary,omitempty" json:"binary,omitempty"`
	// Tar is the name of the tarball of modules in the image; default
	// "kernel.tar", "none" for no tarball.
	Tar *string `yaml:"tar,omitempty" json:"tar,omitempty"`
	// UCode is the name of a CPU microcode cpio in the image; default none.
	UCode string `yaml:"ucode,omitempty" json:"ucode,omitempty"`
}

// File is one `files:` entry.
type File struct {
	Path      string      `yaml:"path" json:"path"`
	Directory bool        `yaml:"directory,omitempty" json:"directory,omitempty"`
	Symlink   string      `yaml:"symlink,omitempty" json:"symlink,omitempty"`
	Contents  *string     `yaml:"contents,omitempty" json:"contents,omitempty"`
	Source    string      `yaml:"source,omitempty" json:"source,omitempty"`
	Metadata  string      `yaml:"metadata,omitempty" json:"metadata,omitempty"`
	Optional  bool        `yaml:"optional,omitempty" json:"optional,omitempty"`
	Mode      string      `yaml:"mode,omitempty" json:"mode,omitempty"`
	UID       interface{} `yaml:"uid,omitempty" json:"uid,omitempty"`
	GID       interface{} `yaml:"gid,omitempty" json:"gid,omitempty"`

	// dir is the directory of the spec file that defined the entry; a
	// relative Source is resolved against it.
	dir string
	pos Pos
}

// Volume is one `volumes:` entry.
type Volume struct {
	Name      string   `yaml:"name" json:"name"`
	Image     string   `yaml:"image,omitempty" json:"image,omitempty"`
	ReadOnly  bool     `yaml:"readonly,omitempty" json:"readonly,omitempty"`
	Format    string   `yaml:"format,omitempty" json:"format,omitempty"`
	Platforms []string `yaml:"platforms,omitempty" json:"platforms,omitempty"`

	pos Pos
}

// Image is one container in onboot, onshutdown or services.
type Image struct {
	Name        string `yaml:"name" json:"name"`
	Image       string `yaml:"image" json:"image"`
	ImageConfig `yaml:",inline"`

	// pos is where the entry was defined; imagePos where its image was.
	pos, imagePos Pos
}

// Pos returns where the image entry was defined ("file:line: services[0]").
func (i *Image) Pos() Pos { return i.pos }

// ImageConfig is the part of an Image that may also come from an image's
// org.mobyproject.config label. A nil pointer means "not set": the label's
// value, then LinuxKit's default, applies.
type ImageConfig struct {
	Capabilities      *[]string               `yaml:"capabilities,omitempty" json:"capabilities,omitempty"`
	CapabilitiesAdd   *[]string               `yaml:"capabilities.add,omitempty" json:"capabilities.add,omitempty"`
	Ambient           *[]string               `yaml:"ambient,omitempty" json:"ambient,omitempty"`
	Mounts            *[]specs.Mount          `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	Binds             *[]string               `yaml:"binds,omitempty" json:"binds,omitempty"`
	BindsAdd          *[]string               `yaml:"binds.add,omitempty" json:"binds.add,omitempty"`
	Devices           *[]Device               `yaml:"devices,omitempty" json:"devices,omitempty"`
	Tmpfs             *[]string               `yaml:"tmpfs,omitempty" json:"tmpfs,omitempty"`
	Command           *[]string               `yaml:"command,omitempty" json:"command,omitempty"`
	Env               *[]string               `yaml:"env,omitempty" json:"env,omitempty"`
	Cwd               string                  `yaml:"cwd,omitempty" json:"cwd,omitempty"`
	Net               string                  `yaml:"net,omitempty" json:"net,omitempty"`
	Pid               string                  `yaml:"pid,omitempty" json:"pid,omitempty"`
	Ipc               string                  `yaml:"ipc,omitempty" json:"ipc,omitempty"`
	Uts               string                  `yaml:"uts,omitempty" json:"uts,omitempty"`
	Userns            string                  `yaml:"userns,omitempty" json:"userns,omitempty"`
	Hostname          string                  `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Readonly          *bool                   `yaml:"readonly,omitempty" json:"readonly,omitempty"`
	MaskedPaths       *[]string               `yaml:"maskedPaths,omitempty" json:"maskedPaths,omitempty"`
	ReadonlyPaths     *[]string               `yaml:"readonlyPaths,omitempty" json:"readonlyPaths,omitempty"`
	UID               *interface{}            `yaml:"uid,omitempty" json:"uid,omitempty"`
	GID               *interface{}            `yaml:"gid,omitempty" json:"gid,omitempty"`
	AdditionalGids    *[]interface{}          `yaml:"additionalGids,omitempty" json:"additionalGids,omitempty"`
	NoNewPrivileges   *bool                   `yaml:"noNewPrivileges,omitempty" json:"noNewPrivileges,omitempty"`
	OOMScoreAdj       *int                    `yaml:"oomScoreAdj,omitempty" json:"oomScoreAdj,omitempty"`
	RootfsPropagation *string                 `yaml:"rootfsPropagation,omitempty" json:"rootfsPropagation,omitempty"`
	CgroupsPath       *string                 `yaml:"cgroupsPath,omitempty" json:"cgroupsPath,omitempty"`
	Resources         *specs.LinuxResources   `yaml:"resources,omitempty" json:"resources,omitempty"`
	Sysctl            *map[string]string      `yaml:"sysctl,omitempty" json:"sysctl,omitempty"`
	Rlimits           *[]string               `yaml:"rlimits,omitempty" json:"rlimits,omitempty"`
	UIDMappings       *[]specs.LinuxIDMapping `yaml:"uidMappings,omitempty" json:"uidMappings,omitempty"`
	GIDMappings       *[]specs.LinuxIDMapping `yaml:"gidMappings,omitempty" json:"gidMappings,omitempty"`
	Annotations       *map[string]string      `yaml:"annotations,omitempty" json:"annotations,omitempty"`

	// Runtime is processed by LinuxKit's init at runtime (runtime.json),
	// not used to build the OCI spec.
	Runtime *Runtime `yaml:"runtime,omitempty" json:"runtime,omitempty"`
}

// Device is a device exposed to the container.
type Device struct {
	Path  string `yaml:"path" json:"path"`
	Type  string `yaml:"type" json:"type"`
	Major int64  `yaml:"major" json:"major"`
	Minor int64  `yaml:"minor" json:"minor"`
	Mode  string `yaml:"mode,omitempty" json:"mode,omitempty"`
}

// Runtime is the `runtime:` section, written to runtime.json.
type Runtime struct {
	Cgroups    *[]string      `yaml:"cgroups,omitempty" json:"cgroups,omitempty"`
	Mounts     *[]specs.Mount `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	Mkdir      *[]string      `yaml:"mkdir,omitempty" json:"mkdir,omitempty"`
	Interfaces *[]Interface   `yaml:"interfaces,omitempty" json:"interfaces,omitempty"`
	BindNS     Namespaces     `yaml:"bindNS,omitempty" json:"bindNS,omitempty"`
	Namespace  *string        `yaml:"namespace,omitempty" json:"namespace,omitempty"`
}

// Namespaces are the paths namespaces are bind mounted to.
type Namespaces struct {
	Cgroup *string `yaml:"cgroup,omitempty" json:"cgroup,omitempty"`
	Ipc    *string `yaml:"ipc,omitempty" json:"ipc,omitempty"`
	Mnt    *string `yaml:"mnt,omitempty" json:"mnt,omitempty"`
	Net    *string `yaml:"net,omitempty" json:"net,omitempty"`
	Pid    *string `yaml:"pid,omitempty" json:"pid,omitempty"`
	User   *string `yaml:"user,omitempty" json:"user,omitempty"`
	Uts    *string `yaml:"uts,omitempty" json:"uts,omitempty"`
}

// Interface is a network interface created or moved at runtime.
type Interface struct {
	Name         string `yaml:"name,omitempty" json:"name,omitempty"`
	Add          string `yaml:"add,omitempty" json:"add,omitempty"`
	Peer         string `yaml:"peer,omitempty" json:"peer,omitempty"`
	CreateInRoot bool   `yaml:"createInRoot" json:"createInRoot"`
}

// FileEntry is one thing the builder writes into the initramfs for a
// `files:` entry (see Moby.FileEntries). Exactly one of Directory, Symlink
// or a regular file (Contents) describes it.
type FileEntry struct {
	// Path is relative to the initramfs root ("etc/motd"): cleaned, never
	// absolute, never escaping the root.
	Path string
	// Mode holds the permission bits (07777), as LinuxKit computes them:
	// the entry's mode, default 0600 for files and symlinks, 0700 for
	// directories; leading directories get the mode with x added wherever
	// r or w is set.
	Mode uint32
	UID  uint32
	GID  uint32
	// Directory is a directory entry.
	Directory bool
	// Implicit marks a leading directory LinuxKit adds for a file entry's
	// parents. LinuxKit writes it even when the directory already exists in
	// an init image (which then changes that directory's mode and owner at
	// unpack); a builder that prefers to keep an existing directory may skip
	// Implicit entries whose path it already wrote.
	Implicit bool
	// Symlink is the target of a symbolic link, as written.
	Symlink string
	// Contents of a regular file.
	Contents []byte
	// Origin says which spec entry produced this ("a.yml:12: files[3]").
	Origin string
}
