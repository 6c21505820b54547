// Package instanceqemu is mobykit's QEMU instance plugin (InfraKit Instance/0.6.1): each
// instance is a QEMU process with a state folder (spec, tags, process record, console log, QMP
// socket, disks) under the plugin's root, booted from a kernel+initrd, an ISO or a disk image.
// Networking is user-mode (outbound access, published ports) plus an optional L2 network
// shared by a group's VMs over a loopback multicast socket (no root needed) with a stable MAC
// and an address per instance (the logical ID when it is an IPv4 address). Userdata (Spec.Init)
// reaches the guest on a metadata CD and through fw_cfg. VMs survive plugin restarts; the
// lifecycle itself is vm.Instances, shared with instance-hyperkit.
package instanceqemu
