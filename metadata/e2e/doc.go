// Package e2e holds the metadata end-to-end test (test files only): one guest image holding
// the real, statically built metadata agent boots in QEMU three times and gets its userdata
// from a metadata CD-ROM, from fw_cfg, and from the local EC2-compatible metadata server
// reached through QEMU's guestfwd, and prints the files the agent expanded.
package e2e
