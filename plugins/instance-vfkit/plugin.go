package instancevfkit

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/vfkit"
)

// Files in a vfkit VM's state folder, besides vm's.
const (
	RESTFile     = "rest.sock" // vfkit's REST API socket
	EFIVarsFile  = "efi-vars"  // the EFI variable store (EFI boot)
	KernelFile   = "kernel"    // the decompressed kernel, when the image's is gzip-compressed
	bootDiskName = "boot.img"  // the instance's copy of a boot disk, under disks/
)

// Plugin is the vfkit instance plugin: vm.Instances, with the VM's state from vfkit's REST
// API added to DescribeInstances' properties.
type Plugin struct {
	*vm.Instances
}

var _ spi.Instance = (*Plugin)(nil)

// New returns a plugin keeping state under root (instances/<ID>/, disks/<logical ID>/).
// Running VMs already recorded there are adopted.
func New(root string, log *slog.Logger) (*Plugin, error) {
	in, err := vm.OpenInstances(root, "vfkit-", log, func(root string, st vm.Store, _ *slog.Logger) vm.Backend {
		return &backend{root: root, store: st}
	})
	if err != nil {
		return nil, fmt.Errorf("instance-vfkit: state root: %w", err)
	}
	return &Plugin{Instances: in}, nil
}

// StateTimeout bounds each REST state query made by DescribeInstances.
var StateTimeout = time.Second

// DescribeInstances is vm.Instances', plus, when properties are asked for, "vm_state" (vfkit's
// answer to GET /vm/state, e.g. "VirtualMachineStateRunning") or "vm_state_error".
func (p *Plugin) DescribeInstances(ctx context.Context, tags map[string]string, properties bool) ([]spi.Description, error) {
	ds, err := p.Instances.DescribeInstances(ctx, tags, properties)
	if err != nil || !properties {
		return ds, err
	}
	for i, d := range ds {
		props := map[string]any{}
		if err := json.Unmarshal(d.Properties, &props); err != nil {
			return nil, fmt.Errorf("describe %s: %w", d.ID, err)
		}
		dir, err := p.Store.Get(string(d.ID))
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, StateTimeout)
		st, err := vfkit.GetState(sctx, dir.Path(RESTFile))
		cancel()
		if err != nil {
			props["vm_state_error"] = err.Error()
		} else {
			props["vm_state"] = st.State
		}
		if ds[i].Properties, err = json.Marshal(props); err != nil {
			return nil, fmt.Errorf("describe %s: %w", d.ID, err)
		}
	}
	return ds, nil
}

type backend struct {
	root  string
	store vm.Store
}

func (b *backend) Validate(raw spi.Any) error {
	_, err := parse(raw, false)
	return err
}

// launchProps is what Launch records in launch.json (and DescribeInstances reports).
type launchProps struct {
	Boot            string `json:"boot"`
	REST            string `json:"rest"`
	MAC             string `json:"mac,omitempty"`
	Network         string `json:"network,omitempty"`
	NetworkMAC      string `json:"network_mac,omitempty"`
	Address         string `json:"address,omitempty"`
	ShutdownTimeout string `json:"shutdown_timeout,omitempty"`
}

func (b *backend) Launch(_ context.Context, dir vm.Dir, id spi.ID, spec spi.Spec) (vm.Launch, error) {
	p, err := parse(spec.Properties, true)
	if err != nil {
		return vm.Launch{}, err
	}
	key, _ := vm.InstanceKey(id, spec)
	cfg := vfkit.Config{
		Binary: p.VFKit, CPUs: p.CPUs, MemoryMB: p.Memory,
		Console: dir.Path(vm.ConsoleFile), RESTSocket: dir.Path(RESTFile),
	}
	lp := launchProps{REST: cfg.RESTSocket, ShutdownTimeout: p.ShutdownTimeout}

	// Boot source.
	kernel, initrd, cmdline := p.Kernel, p.Initrd, p.Cmdline
	iso, disk := p.ISO, p.Disk
	if p.Moby != "" {
		boot, err := vm.FindBoot(p.Moby)
		if err != nil {
			return vm.Launch{}, err
		}
		kernel, initrd, iso, disk = boot.Kernel, boot.Initrd, boot.ISO, boot.Disk
		if cmdline == "" {
			cmdline = boot.Cmdline
		}
		if boot.Disk != "" && boot.DiskFormat != "raw" {
			return vm.Launch{}, fmt.Errorf("moby %s: vfkit boots raw disk images only (Virtualization.framework has no %s); convert with qemu-img convert -O raw", p.Moby, boot.DiskFormat)
		}
	}
	switch {
	case kernel != "":
		lp.Boot = "kernel"
		if cfg.Kernel, err = prepareKernel(dir, kernel); err != nil {
			return vm.Launch{}, err
		}
		if initrd != "" {
			if cfg.Initrd, err = filepath.Abs(initrd); err != nil {
				return vm.Launch{}, err
			}
			if _, err := os.Stat(cfg.Initrd); err != nil {
				return vm.Launch{}, fmt.Errorf("initrd: %w", err)
			}
		}
	case iso != "":
		lp.Boot = "efi-iso"
		if cfg.BootISO, err = filepath.Abs(iso); err != nil {
			return vm.Launch{}, err
		}
		if _, err := os.Stat(cfg.BootISO); err != nil {
			return vm.Launch{}, fmt.Errorf("boot ISO: %w", err)
		}
		cfg.EFIVarStore = dir.Path(EFIVarsFile)
	default:
		lp.Boot = "efi-disk"
		if cfg.BootDisk, err = copyBootDisk(dir, disk); err != nil {
			return vm.Launch{}, err
		}
		cfg.EFIVarStore = dir.Path(EFIVarsFile)
	}

	// Data disks.
	for i, d := range p.Disks {
		size, _ := vfkit.ParseSize(d.Size)
		path, err := vm.DiskPath(b.root, dir, spec, fmt.Sprintf("disk%d.img", i), d.Persistent)
		if err != nil {
			return vm.Launch{}, err
		}
		if err := vm.CreateRawDisk(path, size); err != nil {
			return vm.Launch{}, err
		}
		cfg.Disks = append(cfg.Disks, path)
	}

	// Userdata.
	if spec.Init != "" && p.Metadata != "none" {
		if cfg.DataISO, err = vm.WriteMetadataCD(dir, []byte(spec.Init), string(id), string(id)); err != nil {
			return vm.Launch{}, err
		}
	}

	// Networks.
	extra := []string{}
	if !strings.Contains(" "+cmdline+" ", " console=hvc0 ") {
		extra = append(extra, "console=hvc0") // the virtio console, logged to console.log
	}
	extra = append(extra, "mobykit.instance="+string(id))
	if p.NAT == nil || *p.NAT {
		lp.MAC = vfkit.MAC(key)
		cfg.NICs = append(cfg.NICs, vfkit.NIC{MAC: lp.MAC})
	}
	if n := p.Network; n != nil {
		addr, err := vm.AllocateAddress(b.store, n.Name, n.Subnet, spec.LogicalID)
		if err != nil {
			return vm.Launch{}, err
		}
		lp.Network, lp.NetworkMAC, lp.Address = n.Name, vfkit.MAC(key+"/net:"+n.Name), addr
		cfg.NICs = append(cfg.NICs, vfkit.NIC{Socket: n.Socket, MAC: lp.NetworkMAC})
		extra = append(extra, "mobykit.ip="+addr, "mobykit.mac="+lp.NetworkMAC)
	}
	if cfg.Kernel != "" {
		cfg.Cmdline = strings.TrimSpace(cmdline + " " + strings.Join(extra, " "))
	}
	argv, err := cfg.Args()
	if err != nil {
		return vm.Launch{}, err
	}
	var props map[string]any
	raw, _ := json.Marshal(lp)
	if err := json.Unmarshal(raw, &props); err != nil {
		return vm.Launch{}, err
	}
	return vm.Launch{Argv: argv, Properties: props}, nil
}

// maxKernel bounds a decompressed kernel.
const maxKernel = 256 << 20

// prepareKernel returns the kernel to give vfkit: Virtualization.framework boots only an
// uncompressed kernel on arm64, so a gzip-compressed one (Debian's arm64 vmlinuz) is
// decompressed into the state folder, at most maxKernel bytes.
func prepareKernel(dir vm.Dir, kernel string) (string, error) {
	abs, err := filepath.Abs(kernel)
	if err != nil {
		return "", err
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 2)
	if _, err := io.ReadFull(f, magic); err != nil || magic[0] != 0x1f || magic[1] != 0x8b {
		return abs, nil
	}
	f.Seek(0, io.SeekStart)
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", abs, err)
	}
	out := dir.Path(KernelFile)
	w, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	n, err := io.Copy(w, io.LimitReader(zr, maxKernel+1))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > maxKernel {
		err = fmt.Errorf("decompresses to more than %d bytes", maxKernel)
	}
	if err != nil {
		os.Remove(out)
		return "", fmt.Errorf("kernel %s: decompress: %w", abs, err)
	}
	return out, nil
}

// copyBootDisk gives the instance its own copy of a raw boot disk (vfkit has no copy-on-write
// overlays; on APFS the copy is a clone, which costs no space until written).
func copyBootDisk(dir vm.Dir, disk string) (string, error) {
	abs, err := filepath.Abs(disk)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("boot disk: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("boot disk %s: not a regular file", abs)
	}
	if err := os.MkdirAll(dir.Path(vm.DisksDir), 0o700); err != nil {
		return "", err
	}
	out := dir.Path(filepath.Join(vm.DisksDir, bootDiskName))
	if err := cloneFile(abs, out); err != nil {
		return "", fmt.Errorf("boot disk %s: copy: %w", abs, err)
	}
	return out, nil
}

// copyFile copies src to a new file dst, keeping holes as holes where it can (it seeks over
// blocks of zeros).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, err := out.WriteAt(buf[:n], off); err != nil {
					out.Close()
					return err
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			out.Close()
			return rerr
		}
	}
	if err := out.Truncate(off); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// RequestTimeout bounds one REST request made to stop a VM.
var RequestTimeout = 5 * time.Second

// Shutdown asks vfkit, over its REST API, to stop the VM (a power-off request to the guest);
// if vfkit refuses that, it asks for a HardStop. vm.Instances sends SIGTERM, then SIGKILL,
// when the VM is still running after the shutdown timeout.
func (b *backend) Shutdown(ctx context.Context, dir vm.Dir, _ *vm.Process) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	sock := dir.Path(RESTFile)
	err := vfkit.SetState(ctx, sock, vfkit.Stop)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if herr := vfkit.SetState(ctx, sock, vfkit.HardStop); herr != nil {
		return fmt.Errorf("%w; HardStop: %v", err, herr)
	}
	return nil
}

func (b *backend) Release(vm.Dir) error { return nil }
