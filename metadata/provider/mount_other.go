//go:build !linux

package provider

import "errors"

var errNoMount = errors.New("mounting devices is only supported on Linux")

func mountReadOnly(device, target, fstype string) error { return errNoMount }

func unmount(target string) error { return errNoMount }
