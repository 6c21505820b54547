package instanceqemu

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/metadata/imds"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/qemu"
	"github.com/mobykit/mobykit/vm/qmp"
)

// Plugin is the QEMU instance plugin. Its methods are vm.Instances'.
type Plugin struct {
	*vm.Instances
	root string
	// IMDSRelay is the command QEMU runs for each guest connection to the local metadata
	// server (metadata "imds"), given the VM's socket as "unix:PATH". Default: this
	// executable's `metadata connect unix:PATH` when it is mobykit, else unset (metadata "imds"
	// is refused).
	IMDSRelay func(target string) []string
	imds      *imds.Server
}

var _ spi.Instance = (*Plugin)(nil)

// New returns a plugin keeping its state under root: instances/<ID>/ per VM and
// disks/<logical ID>/ for persistent disks. VMs already running under root are adopted.
func New(root string, log *slog.Logger) (*Plugin, error) {
	var b *backend
	in, err := vm.OpenInstances(root, "qemu-", log, func(root string, st vm.Store, log *slog.Logger) vm.Backend {
		b = &backend{root: root, store: st, log: log}
		return b
	})
	if err != nil {
		return nil, fmt.Errorf("instance-qemu: state root: %w", err)
	}
	p := &Plugin{Instances: in, root: b.root, imds: imds.New()}
	b.plugin = p
	if exe, err := os.Executable(); err == nil && strings.HasPrefix(filepath.Base(exe), "mobykit") {
		p.IMDSRelay = func(target string) []string { return []string{exe, "metadata", "connect", target} }
	}
	p.adoptIMDS()
	return p, nil
}

// Close stops serving metadata to the VMs; the VMs keep running (a new plugin serves them
// again on the same sockets).
func (p *Plugin) Close() error { return p.imds.Close() }

// In a state folder, imdsFile holds the VM's metadata-server record and imdsSocket is the unix
// socket (mode 0600, in the 0700 state folder) its QEMU relays guest connections to.
const (
	imdsFile   = "imds.json"
	imdsSocket = "imds.sock"
)

// adoptIMDS serves again the records of running VMs that use the metadata server, on the
// socket their QEMU relays to.
func (p *Plugin) adoptIMDS() {
	ids, _ := p.Store.List()
	for _, id := range ids {
		dir := vm.Dir(filepath.Join(p.Store.Root, id))
		var lp launchProps
		var proc vm.Process
		if dir.ReadJSON(vm.LaunchFile, &lp) != nil || lp.IMDS == "" {
			continue
		}
		if dir.ReadJSON(vm.ProcessFile, &proc) != nil || !proc.Alive() {
			continue
		}
		if err := p.adoptIMDSOf(dir, id, lp.IMDS); err != nil {
			p.backend().log.Warn("cannot serve metadata to adopted VM", "id", id, "err", err)
		}
	}
}

// adoptIMDSOf serves the record in dir again. The state folder is not trusted: the socket is
// always the folder's own imds.sock (launch.json must name exactly that, else the VM was
// launched by an older plugin relaying to a TCP port, which is not served any more), and the
// record must be this instance's.
func (p *Plugin) adoptIMDSOf(dir vm.Dir, id, listener string) error {
	sock := dir.Path(imdsSocket)
	if listener != sock {
		return fmt.Errorf("%s: imds %q is not the instance's socket %s: a VM whose metadata is relayed elsewhere (an older plugin's TCP port) is not served; destroy it and provision it again",
			dir.Path(vm.LaunchFile), listener, sock)
	}
	var rec imds.Record
	if err := dir.ReadJSON(imdsFile, &rec); err != nil {
		return err
	}
	if rec.InstanceID != id {
		return fmt.Errorf("%s: record of instance %q in the state folder of %s", dir.Path(imdsFile), rec.InstanceID, id)
	}
	rec.Addr = netip.Addr{} // served on its own socket only, never by source address
	return p.serveIMDS(rec, sock)
}

func (p *Plugin) backend() *backend { return p.Backend.(*backend) }

func (p *Plugin) serveIMDS(rec imds.Record, sock string) error {
	if err := p.imds.Register(rec); err != nil {
		return err
	}
	if err := p.imds.ListenVMUnix(rec.InstanceID, sock); err != nil {
		p.imds.Unregister(rec.InstanceID)
		return err
	}
	return nil
}

type backend struct {
	root   string
	store  vm.Store
	log    *slog.Logger
	plugin *Plugin
}

func (b *backend) Validate(raw spi.Any) error {
	_, err := parse(raw, false)
	return err
}

// launchProps is what Launch records in launch.json and DescribeInstances reports.
type launchProps struct {
	Ports   map[string]string `json:"ports,omitempty"`   // "80/tcp" -> "127.0.0.1:41234"
	Address string            `json:"address,omitempty"` // L2 network address, CIDR form
	Network string            `json:"network,omitempty"`
	MAC     string            `json:"mac,omitempty"`
	Accel   string            `json:"accel"`
	QMP     string            `json:"qmp"`
	IMDS    string            `json:"imds,omitempty"` // the VM's metadata socket
}

func (b *backend) Launch(ctx context.Context, dir vm.Dir, id spi.ID, spec spi.Spec) (vm.Launch, error) {
	p, err := parse(spec.Properties, true)
	if err != nil {
		return vm.Launch{}, err
	}
	key, _ := vm.InstanceKey(id, spec)
	cfg := qemu.Config{
		Binary: p.QEMU, Name: string(id), Accel: p.Accel, CPUs: p.CPUs, MemoryMB: p.Memory,
		Console: dir.Path(vm.ConsoleFile), QMP: dir.Path(vm.QMPFile), NoReboot: true, Extra: p.ExtraArgs,
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 512
	}
	if len(cfg.QMP) >= 104 {
		return vm.Launch{}, fmt.Errorf("QMP socket path %s is too long for a unix socket: use a shorter plugin root", cfg.QMP)
	}
	if cfg.Accel == "" || cfg.Accel == "auto" {
		cfg.Accel = qemu.Accel("x86_64")
	}
	lp := launchProps{Accel: cfg.Accel, QMP: cfg.QMP}

	// Boot source.
	switch {
	case p.Moby != "":
		boot, err := vm.FindBoot(p.Moby)
		if err != nil {
			return vm.Launch{}, err
		}
		cfg.Kernel, cfg.Initrd, cfg.Cmdline, cfg.ISO = boot.Kernel, boot.Initrd, boot.Cmdline, boot.ISO
		if p.Cmdline != "" {
			cfg.Cmdline = p.Cmdline
		}
		if boot.Disk != "" {
			d, err := overlay(dir, boot.Disk, boot.DiskFormat)
			if err != nil {
				return vm.Launch{}, err
			}
			cfg.Disks = append(cfg.Disks, d)
		}
		if boot.RootDisk != "" {
			// kernel+squashfs, kernel+erofs, kernel+iso: the root file system image, shared
			// read-only by every member, is the first virtio disk
			cfg.Disks = append(cfg.Disks, qemu.Disk{Path: boot.RootDisk, Format: "raw", ReadOnly: true})
			cfg.Cmdline = strings.TrimSpace(cfg.Cmdline + " " + boot.RootArgs("/dev/vda"))
		}
	case p.Kernel != "":
		cfg.Kernel, cfg.Initrd, cfg.Cmdline = p.Kernel, p.Initrd, p.Cmdline
	case p.ISO != "":
		cfg.ISO = p.ISO
	case p.Disk != "":
		f := "raw"
		if strings.HasSuffix(p.Disk, ".qcow2") {
			f = "qcow2"
		}
		d, err := overlay(dir, p.Disk, f)
		if err != nil {
			return vm.Launch{}, err
		}
		cfg.Disks = append(cfg.Disks, d)
	}
	for _, f := range []string{cfg.Kernel, cfg.Initrd, cfg.ISO} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				return vm.Launch{}, fmt.Errorf("boot file: %w", err)
			}
		}
	}

	// Data disks.
	for i, d := range p.Disks {
		format := d.Format
		if format == "" {
			format = "qcow2"
		}
		path, err := vm.DiskPath(b.root, dir, spec, fmt.Sprintf("disk%d.%s", i, format), d.Persistent)
		if err != nil {
			return vm.Launch{}, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return vm.Launch{}, err
		}
		if err := qemu.CreateStateDisk(path, format, d.Size); err != nil {
			return vm.Launch{}, err
		}
		cfg.Disks = append(cfg.Disks, qemu.Disk{Path: path, Format: format})
	}

	// Userdata.
	if spec.Init != "" {
		var md qemu.MetadataFunc
		switch p.Metadata {
		case "", "both":
			md = qemu.MetadataBoth(string(id), string(id))
		case "cd":
			md = qemu.MetadataCD(string(id), string(id))
		case "fw_cfg":
			md = qemu.MetadataFwCfg
		}
		if md != nil {
			iso, fw, err := md(dir, []byte(spec.Init))
			if err != nil {
				return vm.Launch{}, err
			}
			cfg.DataISO, cfg.FwCfg = iso, fw
		}
	}

	// Networks.
	var extraCmdline []string
	if cfg.Kernel != "" {
		extraCmdline = append(extraCmdline, "mobykit.instance="+string(id))
	}
	if p.UserNet == nil || *p.UserNet {
		nic := qemu.NIC{Kind: qemu.NICUser, MAC: qemu.MAC(key + "/user"), Restrict: !p.Outbound}
		for _, s := range p.Publish {
			f, _ := parsePublish(s)
			if f.HostPort == 0 {
				if f.HostPort, err = freePort(f.Proto, f.HostAddr); err != nil {
					return vm.Launch{}, err
				}
			}
			if lp.Ports == nil {
				lp.Ports = map[string]string{}
			}
			ha := f.HostAddr
			if ha == "" {
				ha = "127.0.0.1"
			}
			lp.Ports[fmt.Sprintf("%d/%s", f.GuestPort, f.Proto)] = net.JoinHostPort(ha, fmt.Sprint(f.HostPort))
			nic.Forwards = append(nic.Forwards, f)
		}
		if p.Metadata == "imds" {
			if nic.Netdev, lp.IMDS, err = b.attachIMDS(dir, id, spec, nic); err != nil {
				return vm.Launch{}, err
			}
		}
		cfg.NICs = append(cfg.NICs, nic)
	}
	if n := p.Network; n != nil {
		addr, err := vm.AllocateAddress(b.store, n.Name, n.Subnet, spec.LogicalID)
		if err != nil {
			return vm.Launch{}, err
		}
		nic := qemu.NIC{Kind: qemu.NICMcast, MAC: qemu.MAC(key + "/net:" + n.Name), Addr: n.Mcast}
		if n.VDE != "" {
			nic.Kind, nic.Addr = qemu.NICVDE, n.VDE
		} else if nic.Addr == "" {
			nic.Addr = mcastFor(n.Name)
		}
		cfg.NICs = append(cfg.NICs, nic)
		lp.Address, lp.Network, lp.MAC = addr, n.Name, nic.MAC
		if cfg.Kernel != "" {
			extraCmdline = append(extraCmdline, "mobykit.ip="+addr, "mobykit.mac="+nic.MAC)
		}
	}
	if len(extraCmdline) > 0 {
		cfg.Cmdline = strings.TrimSpace(cfg.Cmdline + " " + strings.Join(extraCmdline, " "))
	}
	argv, err := cfg.Args()
	if err != nil {
		return vm.Launch{}, err
	}
	props := map[string]any{}
	for k, v := range map[string]any{"accel": lp.Accel, "qmp": lp.QMP} {
		props[k] = v
	}
	if lp.Ports != nil {
		props["ports"] = lp.Ports
	}
	if lp.Address != "" {
		props["address"], props["network"], props["mac"] = lp.Address, lp.Network, lp.MAC
	}
	if lp.IMDS != "" {
		props["imds"] = lp.IMDS
	}
	if p.ShutdownTimeout != "" {
		props["shutdown_timeout"] = p.ShutdownTimeout
	}
	return vm.Launch{Argv: argv, Properties: props}, nil
}

// overlay creates a qcow2 copy-on-write overlay of a shared boot disk in the state folder.
func overlay(dir vm.Dir, base, format string) (qemu.Disk, error) {
	abs, err := filepath.Abs(base)
	if err != nil {
		return qemu.Disk{}, err
	}
	if _, err := os.Stat(abs); err != nil {
		return qemu.Disk{}, fmt.Errorf("boot disk: %w", err)
	}
	if err := os.MkdirAll(dir.Path(vm.DisksDir), 0o755); err != nil {
		return qemu.Disk{}, err
	}
	p := dir.Path(filepath.Join(vm.DisksDir, "boot.qcow2"))
	out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", abs, "-F", format, p).CombinedOutput()
	if err != nil {
		return qemu.Disk{}, fmt.Errorf("qemu-img overlay of %s: %w: %s", abs, err, strings.TrimSpace(string(out)))
	}
	return qemu.Disk{Path: p, Format: "qcow2", Boot: true}, nil
}

// mcastFor derives a multicast group and port from a network name, so every VM naming it
// joins the same segment and different names do not collide (barring hash collisions).
func mcastFor(name string) string {
	h := sha256.Sum256([]byte("mobykit-net:" + name))
	port := 20000 + int(binary.BigEndian.Uint16(h[3:5]))%20000
	return fmt.Sprintf("230.%d.%d.%d:%d", h[0], h[1], h[2]|1, port)
}

func freePort(proto, addr string) (int, error) {
	if addr == "" {
		addr = "127.0.0.1"
	}
	if proto == "udp" {
		c, err := net.ListenPacket("udp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *backend) Shutdown(ctx context.Context, dir vm.Dir, _ *vm.Process) error {
	return qmp.Powerdown(ctx, dir.Path(vm.QMPFile))
}

// Release stops serving the VM's metadata.
func (b *backend) Release(dir vm.Dir) error {
	if _, ok := b.plugin.imds.Lookup(dir.Name()); ok {
		return b.plugin.imds.Unregister(dir.Name())
	}
	return nil
}

// attachIMDS registers the VM with the plugin's EC2-compatible metadata server on its own unix
// socket in the state folder (mode 0600; the folder is 0700) and returns the user-mode -netdev
// value whose guestfwd relays the guest's 169.254.169.254:80 there, and the socket's path. No
// TCP listener is involved: other VMs and other local users cannot reach the record. The
// record is kept in the state folder so that a restarted plugin serves it again.
func (b *backend) attachIMDS(dir vm.Dir, id spi.ID, spec spi.Spec, nic qemu.NIC) (string, string, error) {
	if b.plugin.IMDSRelay == nil {
		return "", "", fmt.Errorf("metadata \"imds\" needs a relay command: run the plugin from the mobykit binary")
	}
	sock := dir.Path(imdsSocket)
	if len(sock) >= 104 {
		return "", "", fmt.Errorf("metadata socket path %s is too long for a unix socket: use a shorter plugin root", sock)
	}
	if err := os.Chmod(string(dir), 0o700); err != nil {
		return "", "", fmt.Errorf("metadata \"imds\": %w", err)
	}
	rec := imds.Record{InstanceID: string(id), Hostname: string(id), LocalIPv4: imds.UserDHCP, MAC: nic.MAC, UserData: []byte(spec.Init)}
	if spec.Init == "" {
		rec.UserData = nil
	}
	var extra []string
	if nic.Restrict {
		extra = append(extra, "restrict=on")
	}
	for _, f := range nic.Forwards {
		extra = append(extra, qemu.HostFwd(f))
	}
	if err := dir.WriteJSON(imdsFile, rec); err != nil {
		return "", "", err
	}
	nd, err := b.plugin.imds.AttachQEMU(rec, "net0", sock, b.plugin.IMDSRelay, extra...)
	if err != nil {
		return "", "", fmt.Errorf("metadata \"imds\": %w", err)
	}
	return nd, sock, nil
}
