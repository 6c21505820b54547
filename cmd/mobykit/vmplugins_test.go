package main

import (
	"testing"

	"github.com/mobykit/mobykit/launcher"
)

// TestVMPluginKindsRegistered: `mobykit plugin start KIND` knows every local VM plugin.
func TestVMPluginKindsRegistered(t *testing.T) {
	for _, kind := range []string{"instance-qemu", "instance-hyperkit", "instance-vfkit", "flavor-moby"} {
		s, err := launcher.ParseSpec(kind)
		if err != nil || s.Name != kind {
			t.Errorf("ParseSpec(%q) = %+v, %v", kind, s, err)
		}
	}
}
