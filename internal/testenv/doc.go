// Package testenv gives tests the real tools they exercise — a Debian cloud kernel, QEMU, an OCI
// registry (Debian's docker-registry) and an AWS API emulator (moto_server) — started on loopback
// and torn down with the test. A helper skips the test only when the tool is truly absent, and
// says which package provides it; any other failure to start is a test failure.
package testenv
