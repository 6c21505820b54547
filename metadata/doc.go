// Package metadata is the root of mobykit's metadata support: the agent that runs inside a VM,
// finds its userdata wherever the machine booted and lays it out under /run/config exactly as
// LinuxKit's metadata package does, and the host-side builders that hand userdata to local VMs.
//
// The work is split into sub-packages:
//
//   - config: the /run/config writer (atomic writes confined to the root) and the JSON
//     userdata expansion (LinuxKit's entries/content/perm convention).
//   - provider: one Provider per cloud or device (AWS, GCP, OpenStack, DigitalOcean, Hetzner,
//     Vultr, Scaleway, Equinix Metal/Packet, CD-ROM/disk, QEMU fw_cfg, local file) and Run,
//     which probes them in LinuxKit's order and writes the result.
//   - iso: a deterministic, pure-Go ISO9660 writer for metadata CD-ROMs, and the volume label
//     reader the agent uses to find them.
//   - fwcfg: the QEMU fw_cfg payload (host side: qemu arguments; guest side: sysfs and port I/O
//     readers).
//   - imds: an EC2-compatible instance metadata server that serves each local VM its own record.
package metadata
