package instanceqemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/qemu"
)

// Properties are the Instance Properties of a group spec. Keys match case-insensitively.
// Exactly one boot source is needed: Moby (a prefix, .iso or disk image, as `mobykit run
// qemu` takes), Kernel (with optional Initrd and Cmdline), ISO, or Disk.
type Properties struct {
	// The boot source: moby, kernel (initrd, cmdline), iso or disk. An ISO is shared
	// read-only by all instances; each instance boots a copy-on-write qcow2 overlay of a Disk.
	vm.BootSource

	// CPUs defaults to 1, Memory (MiB) to 512.
	CPUs   int `json:"cpus"`
	Memory int `json:"memory"`
	// Accel is "auto" (default: KVM where it works, else TCG), "kvm" or "tcg".
	Accel string `json:"accel"`

	// Disks are extra data disks.
	Disks []DiskProperties `json:"disks"`
	// Publish lists guest ports to publish on the host: "[hostaddr:]hostport:guestport[/udp]".
	// Host port 0 picks a free port per instance; DescribeInstances reports it under "ports".
	Publish []string `json:"publish"`
	// UserNet, default true, gives the VM a user-mode NIC (eth0): DHCP (guest address
	// 10.0.2.15), published ports and the metadata service, and nothing else unless Outbound.
	UserNet *bool `json:"user_net"`
	// Outbound, default false, lets the guest open connections through the user-mode NIC: to
	// the internet and the host's networks, and also (QEMU's user-mode networking maps its
	// gateway address, 10.0.2.2, to the host's 127.0.0.1) to every service on the host's
	// loopback: other VMs' published ports, local registries, anything listening there.
	// Without it the NIC is QEMU's restrict=on.
	Outbound bool `json:"outbound"`
	// Network joins the VM to an L2 network shared with the other VMs naming the same network.
	Network *Network `json:"network"`
	// Metadata says how Spec.Init reaches the guest: "both" (default: metadata CD and fw_cfg),
	// "cd", "fw_cfg", "imds" (the plugin's EC2-compatible metadata server at
	// 169.254.169.254, reached through the user-mode NIC, whose subnet becomes
	// 169.254.169.0/24 with the guest at 169.254.169.15) or "none".
	Metadata string `json:"metadata"`
	// ShutdownTimeout is how long Destroy waits for an ACPI shutdown before killing QEMU;
	// default "10s".
	ShutdownTimeout string `json:"shutdown_timeout"`
	// QEMU overrides the executable; ExtraArgs are appended to its command line.
	QEMU      string   `json:"qemu"`
	ExtraArgs []string `json:"extra_args"`
}

// DiskProperties describe one data disk.
type DiskProperties struct {
	// Size, e.g. "1G", is required.
	Size string `json:"size"`
	// Format is "qcow2" (default) or "raw".
	Format string `json:"format"`
	// Persistent keeps the disk across instances of the same logical ID (under the plugin's
	// root, disks/<logical ID>/). Without a logical ID the disk dies with the instance.
	Persistent bool `json:"persistent"`
}

// Network is an L2 segment between VMs.
type Network struct {
	// Name identifies the segment; VMs with the same name share it. Required.
	Name string `json:"name"`
	// Subnet, default "10.99.0.0/24", is where addresses come from: the logical ID when it is
	// an IPv4 address, else the lowest free address from .10 up.
	Subnet string `json:"subnet"`
	// Mcast, default derived from Name, is the loopback multicast group "230.x.y.z:port".
	Mcast string `json:"mcast"`
	// VDE, instead of multicast, is the control folder of a running vde_switch.
	VDE string `json:"vde"`
}

// parse decodes and checks Properties. A group's Instance Properties may lack the boot
// source, which the flavor (flavor-moby) adds in Prepare: Validate accepts that
// (needBoot false); Provision does not.
func parse(raw spi.Any, needBoot bool) (Properties, error) {
	var p Properties
	if len(raw) == 0 || string(raw) == "null" {
		raw = spi.Any("{}")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	if err := d.Decode(&p); err != nil {
		return p, fmt.Errorf("instance-qemu: Properties: %w", err)
	}
	return p, p.check(needBoot)
}

func (p Properties) check(needBoot bool) error {
	if err := p.BootSource.Check(needBoot); err != nil {
		return fmt.Errorf("instance-qemu: Properties: %w", err)
	}
	if p.CPUs < 0 || p.Memory < 0 {
		return fmt.Errorf("instance-qemu: Properties: cpus and memory must not be negative")
	}
	switch p.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("instance-qemu: Properties.accel %q: want auto, kvm or tcg", p.Accel)
	}
	switch p.Metadata {
	case "", "both", "cd", "fw_cfg", "none":
	case "imds":
		if p.UserNet != nil && !*p.UserNet {
			return fmt.Errorf("instance-qemu: Properties.metadata \"imds\" needs user_net")
		}
	default:
		return fmt.Errorf("instance-qemu: Properties.metadata %q: want both, cd, fw_cfg, imds or none", p.Metadata)
	}
	for i, d := range p.Disks {
		if d.Size == "" {
			return fmt.Errorf("instance-qemu: Properties.disks[%d]: size is required", i)
		}
		if d.Format != "" && d.Format != "qcow2" && d.Format != "raw" {
			return fmt.Errorf("instance-qemu: Properties.disks[%d].format %q: want qcow2 or raw", i, d.Format)
		}
	}
	userNet := p.UserNet == nil || *p.UserNet
	if p.Outbound && !userNet {
		return fmt.Errorf("instance-qemu: Properties.outbound needs user_net")
	}
	for _, s := range p.Publish {
		if _, err := parsePublish(s); err != nil {
			return fmt.Errorf("instance-qemu: Properties.publish: %w", err)
		}
		if !userNet {
			return fmt.Errorf("instance-qemu: Properties.publish needs user_net")
		}
	}
	if p.ShutdownTimeout != "" {
		if _, err := time.ParseDuration(p.ShutdownTimeout); err != nil {
			return fmt.Errorf("instance-qemu: Properties.shutdown_timeout: %w", err)
		}
	}
	if p.Network != nil {
		if p.Network.Name == "" {
			return fmt.Errorf("instance-qemu: Properties.network.name is required")
		}
		if _, err := vm.ParseSubnet(p.Network.Subnet); err != nil {
			return fmt.Errorf("instance-qemu: Properties.network.%w", err)
		}
		if p.Network.Mcast != "" && p.Network.VDE != "" {
			return fmt.Errorf("instance-qemu: Properties.network: give mcast or vde, not both")
		}
		if p.Network.Mcast != "" {
			h, _, err := net.SplitHostPort(p.Network.Mcast)
			if ip := net.ParseIP(h); err != nil || ip == nil || !ip.IsMulticast() {
				return fmt.Errorf("instance-qemu: Properties.network.mcast %q: want a multicast IPv4 address and port", p.Network.Mcast)
			}
		}
	}
	return nil
}

// parsePublish accepts qemu.ParseForward's syntax, with host port 0 meaning "pick one".
func parsePublish(s string) (qemu.Forward, error) {
	host, rest, ok := strings.Cut(s, ":")
	if ok && host == "0" {
		f, err := qemu.ParseForward("1:" + rest)
		f.HostPort = 0
		return f, err
	}
	if parts := strings.Split(s, ":"); len(parts) == 3 && parts[1] == "0" {
		f, err := qemu.ParseForward(parts[0] + ":1:" + parts[2])
		f.HostPort = 0
		return f, err
	}
	return qemu.ParseForward(s)
}
