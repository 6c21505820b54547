package instancehyperkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/hyperkit"
)

// Properties are the Instance Properties of a group spec. Keys match case-insensitively, so
// both LinuxKit's spelling ("Moby", "CPUs", "Memory", "Disk") and InfraKit's ("kernel",
// "initrd", "cmdline", "cpus", "memory", "disk_size") are accepted.
type Properties struct {
	// Moby is a boot prefix: PREFIX-kernel, PREFIX-initrd.img, PREFIX-cmdline.
	Moby string `json:"moby"`
	// Kernel, Initrd, Cmdline boot a kernel directly (Cmdline also overrides Moby's).
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	// CPUs defaults to 1, Memory (MiB) to 1024.
	CPUs   int `json:"cpus"`
	Memory int `json:"memory"`
	// DiskSize (MiB), or LinuxKit's Disk, adds a raw disk; 0 means none. With a logical ID
	// it is kept across instances (disks/<logical ID>/disk.img under the plugin root).
	DiskSize int `json:"disk_size"`
	Disk     int `json:"disk"`
	// VPNKitSock is vpnkit's ethernet socket; default Docker Desktop's
	// ~/Library/Containers/com.docker.docker/Data/vpnkit.eth.sock. "none" disables networking.
	VPNKitSock string `json:"vpnkit_sock"`
	// HyperKit overrides the executable (default "hyperkit" on $PATH).
	HyperKit string `json:"hyperkit"`
	// ShutdownTimeout is how long Destroy waits after SIGTERM (HyperKit's ACPI power button)
	// before SIGKILL; default "10s".
	ShutdownTimeout string `json:"shutdown_timeout"`
}

// parse decodes and checks Properties; the boot source may be missing in a group's Instance
// Properties (needBoot false, Validate) since a flavor such as flavor-moby adds it.
func parse(raw spi.Any, needBoot bool) (Properties, error) {
	var p Properties
	if len(raw) == 0 || string(raw) == "null" {
		raw = spi.Any("{}")
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&p); err != nil {
		return p, fmt.Errorf("instance-hyperkit: Properties: %w", err)
	}
	if (p.Moby != "" && p.Kernel != "") || (needBoot && p.Moby == "" && p.Kernel == "") {
		return p, fmt.Errorf("instance-hyperkit: Properties: give exactly one of moby and kernel")
	}
	if p.CPUs < 0 || p.Memory < 0 || p.DiskSize < 0 || p.Disk < 0 {
		return p, fmt.Errorf("instance-hyperkit: Properties: cpus, memory and disk sizes must not be negative")
	}
	if p.DiskSize == 0 {
		p.DiskSize = p.Disk
	}
	if p.ShutdownTimeout != "" {
		if _, err := time.ParseDuration(p.ShutdownTimeout); err != nil {
			return p, fmt.Errorf("instance-hyperkit: Properties.shutdown_timeout: %w", err)
		}
	}
	return p, nil
}

// Plugin is the HyperKit instance plugin; its methods are vm.Instances'.
type Plugin struct {
	*vm.Instances
}

var _ spi.Instance = (*Plugin)(nil)

// New returns a plugin keeping state under root (instances/<ID>/, disks/<logical ID>/).
// Running VMs already recorded there are adopted.
func New(root string, log *slog.Logger) (*Plugin, error) {
	in, err := vm.OpenInstances(root, "hyperkit-", log, func(root string, _ vm.Store, _ *slog.Logger) vm.Backend {
		return &backend{root: root}
	})
	if err != nil {
		return nil, fmt.Errorf("instance-hyperkit: state root: %w", err)
	}
	return &Plugin{Instances: in}, nil
}

type backend struct{ root string }

func (b *backend) Validate(raw spi.Any) error {
	_, err := parse(raw, false)
	return err
}

func (b *backend) Launch(_ context.Context, dir vm.Dir, id spi.ID, spec spi.Spec) (vm.Launch, error) {
	p, err := parse(spec.Properties, true)
	if err != nil {
		return vm.Launch{}, err
	}
	key, lid := vm.InstanceKey(id, spec)
	cfg := hyperkit.Config{
		Binary: p.HyperKit, CPUs: p.CPUs, MemoryMB: p.Memory,
		Kernel: p.Kernel, Initrd: p.Initrd, Cmdline: p.Cmdline,
		UUID: hyperkit.UUID(string(id)), Console: string(dir), PidFile: dir.Path("hyperkit.pid"),
	}
	if p.Moby != "" {
		boot, err := vm.FindBoot(p.Moby)
		if err != nil {
			return vm.Launch{}, err
		}
		if boot.Kernel == "" {
			return vm.Launch{}, fmt.Errorf("moby %s: HyperKit boots a kernel and initrd, not an ISO or disk image", p.Moby)
		}
		cfg.Kernel, cfg.Initrd = boot.Kernel, boot.Initrd
		if cfg.Cmdline == "" {
			cfg.Cmdline = boot.Cmdline
		}
	}
	for _, f := range []string{cfg.Kernel, cfg.Initrd} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				return vm.Launch{}, fmt.Errorf("boot file: %w", err)
			}
		}
	}
	props := map[string]any{"uuid": cfg.UUID, "console": dir.Path("console-ring")}
	if p.ShutdownTimeout != "" {
		props[vm.ShutdownTimeoutProperty] = p.ShutdownTimeout
	}
	if p.DiskSize > 0 {
		// With a logical ID the disk is always kept for the next instance of it.
		path, err := vm.DiskPath(b.root, dir, spec, "disk.img", true)
		if err != nil {
			return vm.Launch{}, err
		}
		if err := vm.CreateRawDisk(path, int64(p.DiskSize)<<20); err != nil {
			return vm.Launch{}, err
		}
		cfg.Disks = append(cfg.Disks, path)
	}
	if spec.Init != "" {
		if cfg.DataISO, err = vm.WriteMetadataCD(dir, []byte(spec.Init), string(id), string(id)); err != nil {
			return vm.Launch{}, err
		}
	}
	switch p.VPNKitSock {
	case "none":
	case "":
		home, _ := os.UserHomeDir()
		cfg.VPNKitSock = filepath.Join(home, "Library/Containers/com.docker.docker/Data/vpnkit.eth.sock")
	default:
		cfg.VPNKitSock = p.VPNKitSock
	}
	if cfg.VPNKitSock != "" {
		cfg.VPNKitUUID = hyperkit.UUID("vpnkit:" + key)
		if ip := net.ParseIP(lid); ip != nil && ip.To4() != nil {
			// Both ways vpnkit knows of fixing an address: InfraKit's magic UUID (older
			// vpnkit) and preferred_ipv4 (newer).
			cfg.VPNKitUUID = hyperkit.IPv4UUID(lid)
			cfg.PreferredIPv4 = ip.To4().String()
			props["address"] = cfg.PreferredIPv4
		}
		props["vpnkit_uuid"] = cfg.VPNKitUUID
	}
	cfg.Cmdline += " mobykit.instance=" + string(id)
	argv, err := cfg.Args()
	if err != nil {
		return vm.Launch{}, err
	}
	return vm.Launch{Argv: argv, Properties: props}, nil
}

// Shutdown sends SIGTERM, which HyperKit turns into an ACPI power-button press.
func (b *backend) Shutdown(_ context.Context, _ vm.Dir, p *vm.Process) error {
	return p.Signal(syscall.SIGTERM)
}

func (b *backend) Release(vm.Dir) error { return nil }
