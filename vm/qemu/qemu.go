package qemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Config describes one QEMU VM. Zero values mean defaults, documented per field.
type Config struct {
	// Binary is the QEMU executable; default "qemu-system-" + Arch.
	Binary string
	// Arch is the guest architecture, "x86_64" (default) or "aarch64".
	Arch string
	// Name is the VM's name (-name), shown by tools such as ps; also the process marker.
	Name string
	// Accel is "kvm", "tcg", or "" / "auto" for KVM when it works else TCG (see Accel).
	Accel string
	// CPUs is the number of virtual CPUs; default 1.
	CPUs int
	// MemoryMB is the guest memory in MiB; default 1024.
	MemoryMB int

	// Kernel, Initrd and Cmdline boot a kernel directly. Exclusive with ISO and a boot Disk.
	Kernel, Initrd, Cmdline string
	// ISO boots from a CD image.
	ISO string
	// UEFI firmware image (OVMF, AAVMF) for ISO or disk boot, or under a direct kernel boot
	// (QEMU hands the kernel to the firmware); "" uses QEMU's BIOS, or on aarch64 boots the
	// kernel without firmware. Attached read-only as the first pflash unit.
	UEFI string
	// UEFIVars is a writable copy of the firmware's variable store (OVMF_VARS, AAVMF_VARS),
	// the second pflash unit; "" for none (aarch64 needs it: see Firmware).
	UEFIVars string
	// Disks are attached as virtio block devices in order.
	Disks []Disk
	// DataISO is attached as a second CD-ROM: the metadata CD.
	DataISO string
	// FwCfg entries are passed with -fw_cfg.
	FwCfg []FwCfg

	// NICs are the network interfaces in order (eth0, eth1, ... in the guest).
	NICs []NIC

	// Console is where the serial console goes: "stdio" (interactive, multiplexed with the
	// QEMU monitor: ^A x quits), "stdio-plain" (stdio without the monitor, for non-terminals),
	// or a file path that receives it (appended).
	Console string
	// QMP is the path of a unix socket for the QMP server, "" for none.
	QMP string
	// NoReboot makes a guest reboot exit QEMU instead.
	NoReboot bool
	// Extra arguments appended verbatim.
	Extra []string
}

// Disk is a block device.
type Disk struct {
	Path   string
	Format string // "raw", "qcow2", ...; "" guesses from the extension (.qcow2 → qcow2, else raw)
	// Boot marks the disk to boot from (no kernel given).
	Boot bool
	// ReadOnly attaches the disk read-only.
	ReadOnly bool
}

// FwCfg is one fw_cfg entry: the guest reads it at /sys/firmware/qemu_fw_cfg/by_name/NAME/raw.
type FwCfg struct {
	Name string // e.g. "opt/org.mobyproject/userdata" (must start with "opt/")
	File string
}

// NIC kinds.
const (
	// NICUser is user-mode networking (slirp): DHCP, published ports and, unless Restrict,
	// outbound access, which includes the host's loopback at the gateway address (10.0.2.2).
	NICUser = "user"
	// NICMcast joins an L2 segment shared with every VM using the same multicast group:port,
	// on the loopback interface, without root.
	NICMcast = "mcast"
	// NICVDE plugs into a vde_switch control socket folder.
	NICVDE = "vde"
)

// NIC is one virtio network interface.
type NIC struct {
	Kind string
	// MAC address; "" lets QEMU choose (not stable). See MAC.
	MAC string
	// Forwards are published ports (NICUser only).
	Forwards []Forward
	// Addr is the multicast group "230.x.y.z:port" (NICMcast) or the vde_switch socket
	// folder (NICVDE).
	Addr string
	// Net is the guest subnet for NICUser ("" = QEMU's 10.0.2.0/24).
	Net string
	// Restrict (NICUser) is QEMU's restrict=on: the guest can open no connection through the
	// NIC (not to the internet, the host's networks or the host's loopback); DHCP and the
	// published ports (Forwards) still work.
	Restrict bool
	// Netdev, when set, is used verbatim as the -netdev value instead of one built from the
	// fields above (for options this package does not model, such as the guestfwd of the
	// local metadata server). It must carry id=netN, N being the NIC's index.
	Netdev string
}

// Forward publishes a guest port on the host.
type Forward struct {
	Proto     string // "tcp" (default) or "udp"
	HostAddr  string // default 127.0.0.1
	HostPort  int
	GuestPort int
}

// ParseForward parses "[hostaddr:]hostport:guestport[/proto]", as `docker run -p` and
// `linuxkit run --publish` do.
func ParseForward(s string) (Forward, error) {
	f := Forward{Proto: "tcp"}
	spec := s
	if i := strings.LastIndexByte(spec, '/'); i >= 0 {
		f.Proto = spec[i+1:]
		spec = spec[:i]
	}
	if f.Proto != "tcp" && f.Proto != "udp" {
		return f, fmt.Errorf("publish %q: protocol %q is neither tcp nor udp", s, f.Proto)
	}
	parts := strings.Split(spec, ":")
	if len(parts) == 3 {
		f.HostAddr = parts[0]
		if net.ParseIP(f.HostAddr) == nil {
			return f, fmt.Errorf("publish %q: host address %q is not an IP address", s, f.HostAddr)
		}
		parts = parts[1:]
	}
	if len(parts) != 2 {
		return f, fmt.Errorf("publish %q: want [hostaddr:]hostport:guestport[/tcp|udp]", s)
	}
	var err error
	if f.HostPort, err = port(parts[0]); err != nil {
		return f, fmt.Errorf("publish %q: host port: %w", s, err)
	}
	if f.GuestPort, err = port(parts[1]); err != nil {
		return f, fmt.Errorf("publish %q: guest port: %w", s, err)
	}
	return f, nil
}

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// MAC derives a stable, locally administered unicast MAC address in QEMU's 52:54:00 range
// from a key (an instance's logical ID or ID, plus the NIC index).
func MAC(key string) string {
	h := sha256.Sum256([]byte(key))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// Args returns the QEMU command line, Binary first.
func (c Config) Args() ([]string, error) {
	arch := c.Arch
	if arch == "" {
		arch = "x86_64"
	}
	bin := c.Binary
	if bin == "" {
		bin = "qemu-system-" + arch
	}
	accel := c.Accel
	if accel == "" || accel == "auto" {
		accel = Accel(arch)
	}
	if accel != "kvm" && accel != "tcg" && accel != "hvf" {
		return nil, fmt.Errorf("qemu: accel %q: want kvm, tcg, hvf or auto", c.Accel)
	}
	cpus, mem := c.CPUs, c.MemoryMB
	if cpus <= 0 {
		cpus = 1
	}
	if mem <= 0 {
		mem = 1024
	}
	a := []string{bin, "-nodefaults", "-no-user-config", "-display", "none"}
	if c.Name != "" {
		a = append(a, "-name", c.Name)
	}
	switch arch {
	case "x86_64":
		// i440fx ("pc"), not q35: its PIIX IDE is what Debian's cloud kernel drives
		// (ata_piix); q35's AHCI is not in it, so a metadata CD or ISO would be invisible.
		a = append(a, "-machine", "pc,accel="+accel)
	case "aarch64":
		a = append(a, "-machine", "virt,accel="+accel)
	default:
		return nil, fmt.Errorf("qemu: unsupported arch %q", arch)
	}
	if accel == "kvm" || accel == "hvf" {
		a = append(a, "-cpu", "host")
	} else if arch == "aarch64" {
		// every feature TCG emulates; pointer authentication with QEMU's cheap
		// implementation-defined algorithm instead of QARMA, which costs TCG dearly
		a = append(a, "-cpu", "max,pauth-impdef=on")
	}
	a = append(a, "-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem))

	boots := 0
	if c.Kernel != "" {
		boots++
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Cmdline != "" {
			a = append(a, "-append", c.Cmdline)
		}
	} else if c.Initrd != "" || c.Cmdline != "" {
		return nil, errors.New("qemu: initrd or cmdline given without a kernel")
	}
	if c.ISO != "" {
		boots++
	}
	for _, d := range c.Disks {
		if d.Boot {
			boots++
		}
	}
	if boots == 0 {
		return nil, errors.New("qemu: nothing to boot: give a kernel, an ISO or a boot disk")
	}
	if boots > 1 {
		return nil, errors.New("qemu: give only one of a kernel, an ISO or a boot disk")
	}
	if c.UEFI != "" {
		a = append(a, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escape(c.UEFI))
		if c.UEFIVars != "" {
			a = append(a, "-drive", "if=pflash,format=raw,unit=1,file="+escape(c.UEFIVars))
		}
	} else if c.UEFIVars != "" {
		return nil, errors.New("qemu: UEFI variables given without UEFI firmware")
	}
	// the virt machine has no IDE bus: its CD-ROMs are virtio-scsi ones
	scsi := false
	cdrom := func(file string, index int, boot bool) {
		if arch != "aarch64" {
			a = append(a, "-drive", "file="+escape(file)+",format=raw,media=cdrom,readonly=on,if=ide,index="+strconv.Itoa(index))
			return
		}
		if !scsi {
			a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
			scsi = true
		}
		id := fmt.Sprintf("cd%d", index)
		dev := "scsi-cd,bus=scsi0.0,drive=" + id
		if boot {
			dev += ",bootindex=0"
		}
		a = append(a, "-drive", "file="+escape(file)+",format=raw,media=cdrom,readonly=on,if=none,id="+id, "-device", dev)
	}
	if c.ISO != "" {
		cdrom(c.ISO, 0, true)
		if arch != "aarch64" {
			a = append(a, "-boot", "d")
		}
	}
	for i, d := range c.Disks {
		f := d.Format
		if f == "" {
			f = "raw"
			if strings.HasSuffix(d.Path, ".qcow2") {
				f = "qcow2"
			}
		}
		id := fmt.Sprintf("disk%d", i)
		drive := "file=" + escape(d.Path) + ",format=" + f + ",if=none,id=" + id
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive)
		dev := "virtio-blk-pci,drive=" + id
		if d.Boot {
			dev += ",bootindex=0"
		}
		a = append(a, "-device", dev)
	}
	if c.DataISO != "" {
		cdrom(c.DataISO, 1, false)
	}
	for _, f := range c.FwCfg {
		if !strings.HasPrefix(f.Name, "opt/") {
			return nil, fmt.Errorf("qemu: fw_cfg name %q must start with opt/", f.Name)
		}
		a = append(a, "-fw_cfg", "name="+escape(f.Name)+",file="+escape(f.File))
	}
	dev := "virtio-net-pci"
	for i, n := range c.NICs {
		id := fmt.Sprintf("net%d", i)
		var nd string
		switch n.Kind {
		case NICUser:
			nd = "user,id=" + id
			if n.Net != "" {
				nd += ",net=" + n.Net
			}
			if n.Restrict {
				nd += ",restrict=on"
			}
			for _, f := range n.Forwards {
				nd += "," + HostFwd(f)
			}
		case NICMcast:
			if _, _, err := net.SplitHostPort(n.Addr); err != nil {
				return nil, fmt.Errorf("qemu: NIC %d: multicast address %q: %w", i, n.Addr, err)
			}
			nd = "socket,id=" + id + ",mcast=" + n.Addr + ",localaddr=127.0.0.1"
		case NICVDE:
			nd = "vde,id=" + id + ",sock=" + escape(n.Addr)
		default:
			return nil, fmt.Errorf("qemu: NIC %d: unknown kind %q", i, n.Kind)
		}
		if len(n.Forwards) > 0 && n.Kind != NICUser {
			return nil, fmt.Errorf("qemu: NIC %d: published ports need a user-mode NIC", i)
		}
		if n.Restrict && n.Kind != NICUser {
			return nil, fmt.Errorf("qemu: NIC %d: restrict is an option of a user-mode NIC", i)
		}
		if n.Netdev != "" {
			if !strings.Contains(","+n.Netdev+",", ",id="+id+",") {
				return nil, fmt.Errorf("qemu: NIC %d: netdev %q lacks id=%s", i, n.Netdev, id)
			}
			nd = n.Netdev
		}
		d := dev + ",netdev=" + id
		if n.MAC != "" {
			if _, err := net.ParseMAC(n.MAC); err != nil {
				return nil, fmt.Errorf("qemu: NIC %d: %w", i, err)
			}
			d += ",mac=" + n.MAC
		}
		a = append(a, "-netdev", nd, "-device", d)
	}
	switch c.Console {
	case "", "stdio":
		a = append(a, "-serial", "mon:stdio")
	case "stdio-plain":
		a = append(a, "-serial", "stdio")
	default:
		a = append(a, "-chardev", "file,id=console,append=on,path="+escape(c.Console), "-serial", "chardev:console")
	}
	if c.QMP != "" {
		a = append(a, "-qmp", "unix:"+escape(c.QMP)+",server=on,wait=off")
	}
	if c.NoReboot {
		a = append(a, "-no-reboot")
	}
	return append(a, c.Extra...), nil
}

// HostFwd is the user-mode netdev option that publishes f: "hostfwd=tcp:127.0.0.1:8080-:80".
func HostFwd(f Forward) string {
	p, h := f.Proto, f.HostAddr
	if p == "" {
		p = "tcp"
	}
	if h == "" {
		h = "127.0.0.1"
	}
	return fmt.Sprintf("hostfwd=%s:%s:%d-:%d", p, h, f.HostPort, f.GuestPort)
}

// escape doubles commas, QEMU's escape inside option values.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Accel returns the best accelerator for arch on this host: "kvm" when the host has the same
// architecture and /dev/kvm can create a VM (not merely open: containers often expose a
// /dev/kvm without virtualisation underneath), else "tcg".
func Accel(arch string) string {
	host := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if arch != "" && arch != host {
		return "tcg"
	}
	if KVMUsable() {
		return "kvm"
	}
	return "tcg"
}

// KVMUsable reports whether /dev/kvm opens and KVM_CREATE_VM succeeds and, on x86, whether the
// CPU advertises VMX or SVM: some sandboxes emulate /dev/kvm well enough to create a VM whose
// guest then never runs.
func KVMUsable() bool {
	if runtime.GOARCH == "amd64" {
		b, err := os.ReadFile("/proc/cpuinfo")
		if err != nil || !hasVirtFlag(string(b)) {
			return false
		}
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	const kvmCreateVM = 0xAE01 // _IO(KVMIO, 0x01)
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return false
	}
	unix.Close(int(fd))
	return true
}

// CreateDisk creates a disk image of size (e.g. "1G") and format with qemu-img, unless path
// already holds one, which is then used as it is. For a path the user named; a disk in a
// state folder goes through CreateStateDisk.
func CreateDisk(path, format, size string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if format == "" {
		format = "qcow2"
	}
	out, err := exec.Command("qemu-img", "create", "-q", "-f", format, path, size).CombinedOutput()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("qemu-img create %s (%s, %s): %w: %s", path, format, size, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CreateStateDisk is CreateDisk for a disk kept in a state folder (a persistent disk from an
// earlier VM). What is found there is checked first: anything but a regular file (a planted
// symlink or device would hand the VM another file or a host disk) is refused, and so is an
// image that names other files QEMU would open with it (a qcow2 backing file or external data
// file).
func CreateStateDisk(path, format, size string) error {
	fi, err := os.Lstat(path)
	if err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("disk %s: a %s, not a regular file: refused", path, fileKind(fi.Mode()))
		}
		return checkDiskRefs(path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk %s: %w", path, err)
	}
	return CreateDisk(path, format, size)
}

// maxImageInfo bounds what qemu-img info may print about one image.
const maxImageInfo = 1 << 20

// checkDiskRefs refuses an existing disk image that refers to other files.
func checkDiskRefs(path string) error {
	cmd := exec.Command("qemu-img", "info", "--output=json", "-U", path)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limitWriter{w: &out, n: maxImageInfo}, &limitWriter{w: &errOut, n: 64 << 10}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("disk %s: qemu-img info: %w: %s", path, err, strings.TrimSpace(errOut.String()))
	}
	var info struct {
		Format          string `json:"format"`
		BackingFilename string `json:"backing-filename"`
		FullBacking     string `json:"full-backing-filename"`
		FormatSpecific  struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		return fmt.Errorf("disk %s: qemu-img info: %w", path, err)
	}
	switch {
	case info.BackingFilename != "" || info.FullBacking != "":
		return fmt.Errorf("disk %s: a %s image with a backing file (%q): refused", path, info.Format, info.BackingFilename+info.FullBacking)
	case info.FormatSpecific.Data.DataFile != "":
		return fmt.Errorf("disk %s: a %s image with an external data file (%q): refused", path, info.Format, info.FormatSpecific.Data.DataFile)
	}
	return nil
}

// limitWriter keeps the first n bytes written to it and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	k := min(len(p), l.n)
	if k > 0 {
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsDir():
		return "folder"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

func hasVirtFlag(cpuinfo string) bool {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}
