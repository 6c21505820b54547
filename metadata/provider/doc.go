// Package provider finds a machine's metadata and userdata wherever it booted, the way
// LinuxKit's pkg/metadata does, and lays them out with metadata/config.
//
// Each Provider speaks one source's real protocol: the AWS instance metadata service (IMDSv2
// token first, v1 fallback), GCP (Metadata-Flavor: Google), OpenStack, Hetzner (EC2-style
// paths), DigitalOcean, Vultr, Scaleway, Equinix Metal / Packet, a CD-ROM or disk labelled
// cidata/CIDATA/config (NoCloud user-data/meta-data or LinuxKit's single config file), the
// QEMU fw_cfg device, and a local file. Every endpoint and device path comes from Config, so
// tests point providers at httptest servers and temporary directories.
//
// Run probes them in LinuxKit's order: the network providers (all at once, each bounded by
// Config.Timeout, the first in list order that answers wins), then the CD-ROM/fw_cfg devices,
// then files; it then writes provider, userdata (and its JSON expansion) and sets the hostname.
package provider
