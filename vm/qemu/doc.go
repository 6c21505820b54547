// Package qemu builds QEMU command lines for mobykit's VMs (direct kernel boot, ISO or disk
// boot, virtio disks, metadata CD and fw_cfg entries, user-mode networking with published
// ports, an L2 network between VMs over a loopback multicast or a vde_switch socket, serial
// console, QMP socket) and picks the accelerator: KVM where /dev/kvm can really create a VM,
// TCG otherwise. It only describes the process; vm starts and supervises it.
package qemu
