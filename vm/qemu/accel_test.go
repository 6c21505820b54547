package qemu

import (
	"os"
	"testing"
)

func TestAccelMatchesKVM(t *testing.T) {
	got := Accel("x86_64")
	want := "tcg"
	if KVMUsable() {
		want = "kvm"
	}
	if got != want {
		t.Fatalf("Accel = %q, want %q", got, want)
	}
	if _, err := os.Stat("/dev/kvm"); err == nil {
		t.Logf("/dev/kvm present; usable: %v", KVMUsable())
	}
	if Accel("aarch64") != "tcg" && Accel("x86_64") == "kvm" {
		t.Fatal("foreign-arch guest would use KVM")
	}
}
