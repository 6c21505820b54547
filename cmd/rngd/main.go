// Command rngd is mobykit's rngd image (LinuxKit's): it credits the kernel's random pool with
// numbers from the CPU's RDRAND; -1 does one round and exits (an onboot container).
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/mobykit/mobykit/entropy"
)

func main() {
	oneshot := flag.Bool("1", false, "Enable oneshot mode")
	flag.Parse()
	if _, err := entropy.Run(*oneshot, log.Printf); err != nil {
		fmt.Fprintln(os.Stderr, "rngd:", err)
		os.Exit(1)
	}
}
