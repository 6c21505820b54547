// Package sysinit is mobykit's in-VM init: it prepares the machine (mounts, kernel modules,
// hostname, loopback), runs the containers laid out by the assembler in LinuxKit's layout —
// /containers/onboot/NNN-name in order and to completion, /containers/services/name kept
// running with restarts, /containers/onshutdown/NNN-name at power-off — with runc, and powers
// the machine off cleanly on `poweroff` (SIGUSR2 to PID 1, as busybox sends it), SIGTERM
// (reboot), Ctrl-Alt-Del, or the ACPI power button.
//
// Each container folder holds config.json (the OCI runtime spec), runtime.json (LinuxKit's
// runtime section: mkdir, mounts, cgroups, interfaces, bindNS) and either rootfs/ (read-only
// image) or lower/ (the image, with an overlay of lower/ and a tmpfs mounted on rootfs/ before
// the container starts).
//
// As PID 1 it reaps every orphan; the processes it starts itself are waited for through the
// same reaper (see Reaper), never with exec.Cmd.Wait.
package sysinit
