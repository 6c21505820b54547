package instancevfkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/vfkit"
)

// Properties are the Instance Properties of a group spec. Keys match case-insensitively;
// unknown keys are refused (a misspelt or unsupported key, such as instance-qemu's "publish",
// would otherwise be silently ignored). Exactly one boot source is needed at Provision: Moby
// (a boot prefix, .iso or raw disk image, as flavor-moby sets it), Kernel, ISO or Disk.
type Properties struct {
	// The boot source: moby (a boot prefix, an .iso or a raw disk image), kernel (initrd,
	// cmdline), iso or disk. An ISO boots by EFI, attached read-only and shared by all
	// instances; a Disk is a raw image booted by EFI, each instance its own copy (a clone on
	// APFS).
	vm.BootSource

	// CPUs defaults to 1, Memory (MiB) to 1024.
	CPUs   int `json:"cpus"`
	Memory int `json:"memory"`
	// Disks are extra raw data disks (virtio-blk).
	Disks []DiskProperties `json:"disks"`
	// NAT, default true, gives the VM a NAT NIC (eth0; macOS's DHCP, outbound access, and an
	// address the host reaches directly) with a MAC derived from the logical ID (else the ID).
	NAT *bool `json:"nat"`
	// Network adds a NIC on a network shared with the other VMs naming the same switch socket.
	Network *Network `json:"network"`
	// Metadata is "cd" (default: userdata on a metadata disk, label cidata) or "none".
	Metadata string `json:"metadata"`
	// ShutdownTimeout is how long Destroy waits after the REST Stop request before SIGTERM;
	// default "10s".
	ShutdownTimeout string `json:"shutdown_timeout"`
	// VFKit overrides the executable (default "vfkit" on $PATH).
	VFKit string `json:"vfkit"`
}

// DiskProperties describe one raw data disk.
type DiskProperties struct {
	// Size, e.g. "1G", is required; the file is sparse.
	Size string `json:"size"`
	// Persistent keeps the disk across instances of the same logical ID (under the plugin's
	// root, disks/<logical ID>/diskN.img). Without a logical ID the disk dies with the instance.
	Persistent bool `json:"persistent"`
}

// Network is a segment shared by a group's VMs. vfkit has no switch of its own (its NAT NICs
// are separate attachments): the segment is a user-supplied switch listening on a unixgram
// socket, such as vmnet-helper (`vmnet-helper --socket PATH`) or gvproxy
// (`gvproxy --listen-vfkit unixgram://PATH`).
type Network struct {
	// Name identifies the segment (addresses are allocated per name). Required.
	Name string `json:"name"`
	// Socket is the switch's unixgram socket, an absolute path. Required.
	Socket string `json:"socket"`
	// Subnet, default "10.99.0.0/24", is where addresses come from: the logical ID when it is
	// an IPv4 address, else the lowest free address from .10 up. The address and MAC reach a
	// kernel-booted guest as mobykit.ip= and mobykit.mac= on its command line.
	Subnet string `json:"subnet"`
}

// maxProperties bounds the Properties document.
const maxProperties = 1 << 20

// parse decodes and checks Properties. A group's Instance Properties may lack the boot
// source, which the flavor (flavor-moby) adds in Prepare: Validate accepts that
// (needBoot false); Provision does not.
func parse(raw spi.Any, needBoot bool) (Properties, error) {
	var p Properties
	if len(raw) > maxProperties {
		return p, fmt.Errorf("instance-vfkit: Properties: %d bytes, more than %d", len(raw), maxProperties)
	}
	if len(raw) == 0 || string(raw) == "null" {
		raw = spi.Any("{}")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return p, fmt.Errorf("instance-vfkit: Properties: %w", err)
	}
	if d.More() {
		return p, fmt.Errorf("instance-vfkit: Properties: trailing data after the object")
	}
	return p, p.check(needBoot)
}

func (p Properties) check(needBoot bool) error {
	if err := p.BootSource.Check(needBoot); err != nil {
		return fmt.Errorf("instance-vfkit: Properties: %w", err)
	}
	if p.CPUs < 0 || p.Memory < 0 || p.CPUs > 512 || p.Memory > 1<<24 {
		return fmt.Errorf("instance-vfkit: Properties: cpus (0..512) and memory (MiB, 0..16777216) out of range")
	}
	switch p.Metadata {
	case "", "cd", "none":
	default:
		return fmt.Errorf("instance-vfkit: Properties.metadata %q: want cd or none", p.Metadata)
	}
	if len(p.Disks) > 16 {
		return fmt.Errorf("instance-vfkit: Properties.disks: %d disks, at most 16", len(p.Disks))
	}
	for i, d := range p.Disks {
		if _, err := vfkit.ParseSize(d.Size); err != nil {
			return fmt.Errorf("instance-vfkit: Properties.disks[%d].size: %w", i, err)
		}
	}
	if p.ShutdownTimeout != "" {
		if d, err := time.ParseDuration(p.ShutdownTimeout); err != nil || d < 0 {
			return fmt.Errorf("instance-vfkit: Properties.shutdown_timeout %q: want a non-negative Go duration", p.ShutdownTimeout)
		}
	}
	if n := p.Network; n != nil {
		if n.Name == "" {
			return fmt.Errorf("instance-vfkit: Properties.network.name is required")
		}
		if n.Socket == "" || !filepath.IsAbs(n.Socket) {
			return fmt.Errorf("instance-vfkit: Properties.network.socket %q: want the absolute path of a switch's unixgram socket (vmnet-helper, gvproxy); vfkit has no shared network of its own", n.Socket)
		}
		if _, err := vm.ParseSubnet(n.Subnet); err != nil {
			return fmt.Errorf("instance-vfkit: Properties.network.%w", err)
		}
	}
	return nil
}
