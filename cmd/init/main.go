// Command init is mobykit's PID 1 inside the VM (see package sysinit): it mounts the kernel
// filesystems, loads the kernel modules shipped in the image, runs the onboot containers, keeps
// the services running, and runs the onshutdown containers before powering off.
package main

import (
	"os"

	"github.com/mobykit/mobykit/cmd/init/internal/sysinit"
)

func main() { sysinit.Main(os.Args) }
