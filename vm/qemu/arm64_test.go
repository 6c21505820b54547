package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunArm64Options runs Run against a stand-in QEMU that records its arguments: --arch
// arm64 picks qemu-system-aarch64's machine, maps console=ttyS0 to ttyAMA0, attaches the UEFI
// code read-only and a copy of the variable store made once in the state folder and kept
// across runs (the guest's NVRAM).
func TestRunArm64Options(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "hello")
	for suffix, data := range map[string]string{"-kernel": "k", "-initrd.img": "i", "-cmdline": "console=ttyS0,115200 quiet"} {
		if err := os.WriteFile(prefix+suffix, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, vars := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd")
	os.WriteFile(code, []byte("code"), 0o644)
	os.WriteFile(vars, []byte("pristine vars"), 0o644)
	argsFile := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "fake-qemu")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do echo \"$a\"; done > "+argsFile+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	run := func(o RunOptions) []string {
		t.Helper()
		o.Path, o.Binary, o.StateDir, o.Accel = prefix, fake, state, "tcg"
		o.Stdin, o.Stdout, o.Stderr = devNull(t), devNull(t), devNull(t)
		if err := Run(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(argsFile)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	a := strings.Join(run(RunOptions{Arch: "arm64", UEFI: true, Firmware: code, FirmwareVars: vars}), " ")
	copyPath := filepath.Join(state, "uefi-vars.fd")
	for _, want := range []string{
		"-machine virt,accel=tcg", "-cpu max,pauth-impdef=on", "-append console=ttyAMA0,115200 quiet",
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive if=pflash,format=raw,unit=1,file=" + copyPath,
		"virtio-net-pci,netdev=net0",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("arguments lack %q:\n%s", want, a)
		}
	}
	if b, err := os.ReadFile(copyPath); err != nil || string(b) != "pristine vars" {
		t.Fatalf("variable store copy: %q, %v", b, err)
	}
	// the guest wrote its variables: the next run keeps them
	os.WriteFile(copyPath, []byte("guest's vars"), 0o644)
	run(RunOptions{Arch: "aarch64", UEFI: true, Firmware: code, FirmwareVars: vars})
	if b, _ := os.ReadFile(copyPath); string(b) != "guest's vars" {
		t.Errorf("second run replaced the variable store: %q", b)
	}
	// without firmware: a direct kernel boot, no pflash
	a = strings.Join(run(RunOptions{Arch: "arm64"}), " ")
	if strings.Contains(a, "pflash") || !strings.Contains(a, "-kernel "+prefix+"-kernel") {
		t.Errorf("direct boot: %s", a)
	}
	// amd64 keeps ttyS0
	a = strings.Join(run(RunOptions{}), " ")
	if !strings.Contains(a, "console=ttyS0,115200") || !strings.Contains(a, "-machine pc,accel=tcg") {
		t.Errorf("amd64: %s", a)
	}
	o := RunOptions{Path: prefix, Arch: "riscv64", StateDir: state, Binary: fake}
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("unknown arch: %v", err)
	}
	o = RunOptions{Path: prefix, Arch: "arm64", StateDir: state, Binary: fake, Firmware: filepath.Join(dir, "absent.fd")}
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "absent.fd") {
		t.Errorf("absent firmware: %v", err)
	}
}
