package provider

import "syscall"

func mountReadOnly(device, target, fstype string) error {
	return syscall.Mount(device, target, fstype, syscall.MS_RDONLY, "")
}

func unmount(target string) error { return syscall.Unmount(target, 0) }
