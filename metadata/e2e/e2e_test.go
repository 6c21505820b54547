package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/metadata/fwcfg"
	"github.com/mobykit/mobykit/metadata/imds"
	"github.com/mobykit/mobykit/metadata/iso"
	"github.com/mobykit/mobykit/vm/vmtest"
)

// relayEnv makes the test binary act as QEMU's per-connection guestfwd relay (what
// `mobykit metadata connect ADDR` does), so the test needs no other binary.
const relayEnv = "MOBYKIT_E2E_RELAY_TO"

func TestMain(m *testing.M) {
	if addr := os.Getenv(relayEnv); addr != "" {
		// stdin, stdout and stderr are all the guest's connection: report nothing on them.
		if err := imds.Relay(context.Background(), addr, os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Guest modules, dependencies first: IDE CD-ROM and ISO9660, fw_cfg sysfs, virtio-net.
var modules = []string{
	"scsi_common", "scsi_mod", "libata", "ata_piix", "cdrom", "sr_mod", "isofs",
	"qemu_fw_cfg",
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "failover", "net_failover", "virtio_net",
}

// guestInit boots the guest like an onboot container would see it, runs the agent with its
// default provider order, then prints what it wrote. The network, when there is one, gets a
// static address on the metadata user network and no default route: no guest packet can be
// routed anywhere but to the forwarded metadata address.
const guestInit = `
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
for m in %s; do insmod $m 2>/dev/null; done
ip link set lo up
if ip link set eth0 up 2>/dev/null; then ip addr add %s/24 dev eth0; fi
# the CD-ROM appears asynchronously once sr_mod is loaded
for i in $(seq 1 30); do [ -e /dev/sr0 ] && break; sleep 0.1; done
echo E2E-AGENT-START
/usr/bin/metadata -timeout 2s
echo "E2E-RC=$?"
echo "E2E-PROVIDER=$(cat /run/config/provider)"
echo "E2E-HOSTNAME=$(hostname)"
echo "E2E-MESSAGE=$(cat /run/config/app/message)"
echo "E2E-MODE=$(stat -c %%a /run/config/app/message)"
echo "E2E-INSTANCE=$(cat /run/config/instance_id 2>/dev/null)"
echo "E2E-KEYS=$(cat /run/config/ssh/authorized_keys 2>/dev/null)"
echo E2E-DONE
poweroff -f
`

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func userdata(host, msg string) []byte {
	doc := `{"app":{"entries":{"message":{"perm":"0640","content":"` + msg + `"}}}`
	if host != "" {
		doc += `,"hostname":{"content":"` + host + `"}`
	}
	return []byte(doc + "}")
}

// boot runs qemu with the shared kernel and initrd plus extra args, waits for E2E-DONE (or
// the guest powering off) and returns the console.
func boot(t *testing.T, kernel, initrd string, extra []string, env []string) string {
	t.Helper()
	args := []string{
		"-nodefaults", "-no-user-config", "-machine", "pc,accel=tcg", "-m", "256", "-smp", "1",
		"-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet",
	}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	err := cmd.Run()
	t.Logf("qemu ran %v", time.Since(start).Round(time.Millisecond))
	console := out.String()
	if !strings.Contains(console, "E2E-DONE") {
		t.Fatalf("guest did not finish (qemu: %v); console:\n%s", err, console)
	}
	return console
}

func marker(console, name string) string {
	for _, line := range strings.Split(console, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), name+"="); ok {
			return v
		}
	}
	return "<missing " + name + ">"
}

func TestSameImageThreeWays(t *testing.T) {
	if testing.Short() {
		t.Skip("boots four VMs; skipped with -short")
	}
	testenv.RequireQEMU(t)
	kernel := testenv.Kernel(t)
	dir := t.TempDir()

	// The agent, built as the metadata image builds it: static, no cgo.
	agent := filepath.Join(dir, "metadata")
	build := exec.Command("go", "build", "-o", agent, "github.com/mobykit/mobykit/cmd/metadata")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}

	// One image for all three boots.
	mkInitrd := func(name string, modules []string) string {
		ird := vmtest.NewBusybox(t, "")
		mods := ird.Modules(t, testenv.KernelDir(t), modules...)
		ird.Add("init", 0o755, "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n"+
			fmt.Sprintf(guestInit, strings.Join(mods, " "), imds.UserDHCP))
		ird.Add("usr/bin/metadata", 0o755, string(bin))
		return ird.Write(t, filepath.Join(dir, name))
	}
	initrd := mkInitrd("initrd.img", modules)

	t.Run("cdrom", func(t *testing.T) {
		cd := filepath.Join(dir, "meta.iso")
		if err := iso.WriteFile(cd, iso.Metadata(userdata("vm-cd", "hello from the cd"), "i-cd", ""), iso.Options{}); err != nil {
			t.Fatal(err)
		}
		c := boot(t, kernel, initrd, []string{"-drive", "file=" + cd + ",format=raw,media=cdrom,readonly=on,if=ide,index=1"}, nil)
		check(t, c, map[string]string{"E2E-RC": "0", "E2E-PROVIDER": "CDROM /dev/sr0", "E2E-HOSTNAME": "vm-cd",
			"E2E-MESSAGE": "hello from the cd", "E2E-MODE": "640", "E2E-INSTANCE": "i-cd"})
	})

	// A CD as `linuxkit metadata create` makes it: label CONFIG, one plain ISO9660 file CONFIG
	// (no Rock Ridge), here made by xorriso.
	t.Run("linuxkit-style cdrom", func(t *testing.T) {
		if _, err := exec.LookPath("xorriso"); err != nil {
			t.Skip("xorriso not installed (apt-get install xorriso)")
		}
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "config"), userdata("vm-lk", "hello from a linuxkit cd"), 0o644)
		cd := filepath.Join(dir, "linuxkit.iso")
		if out, err := exec.Command("xorriso", "-as", "mkisofs", "-V", "CONFIG", "-o", cd, src).CombinedOutput(); err != nil {
			t.Fatalf("xorriso: %v\n%s", err, out)
		}
		c := boot(t, kernel, initrd, []string{"-drive", "file=" + cd + ",format=raw,media=cdrom,readonly=on,if=ide,index=1"}, nil)
		check(t, c, map[string]string{"E2E-RC": "0", "E2E-PROVIDER": "CDROM /dev/sr0", "E2E-HOSTNAME": "vm-lk",
			"E2E-MESSAGE": "hello from a linuxkit cd", "E2E-MODE": "640"})
	})

	t.Run("fw_cfg", func(t *testing.T) {
		_, args, err := fwcfg.WritePayload(t.TempDir(), userdata("vm-fwcfg", "hello from fw_cfg"))
		if err != nil {
			t.Fatal(err)
		}
		c := boot(t, kernel, initrd, args, nil)
		check(t, c, map[string]string{"E2E-RC": "0", "E2E-PROVIDER": "fw_cfg", "E2E-HOSTNAME": "vm-fwcfg",
			"E2E-MESSAGE": "hello from fw_cfg", "E2E-MODE": "640"})
	})

	// Without the qemu_fw_cfg module the agent reads fw_cfg through the x86 I/O ports.
	t.Run("fw_cfg via I/O ports", func(t *testing.T) {
		noFwCfg := mkInitrd("initrd-no-fwcfg.img", slices.DeleteFunc(slices.Clone(modules), func(m string) bool { return m == "qemu_fw_cfg" }))
		_, args, err := fwcfg.WritePayload(t.TempDir(), userdata("vm-ports", "hello through the ports"))
		if err != nil {
			t.Fatal(err)
		}
		c := boot(t, kernel, noFwCfg, args, nil)
		if !strings.Contains(c, "read through the I/O ports") {
			t.Errorf("the agent did not use the I/O port path")
		}
		check(t, c, map[string]string{"E2E-RC": "0", "E2E-PROVIDER": "fw_cfg", "E2E-HOSTNAME": "vm-ports",
			"E2E-MESSAGE": "hello through the ports", "E2E-MODE": "640"})
	})

	t.Run("local metadata server", func(t *testing.T) {
		s := imds.New(imds.WithTokenRequired())
		defer s.Close()
		if err := s.Register(imds.Record{
			InstanceID: "i-0e2e000000000001", Hostname: "vm-imds", LocalIPv4: imds.UserDHCP,
			PublicKeys: []imds.PublicKey{{Name: "e2e", Key: "ssh-ed25519 AAAAE2E e2e"}},
			UserData:   userdata("", "hello from the metadata server"),
		}); err != nil {
			t.Fatal(err)
		}
		// A second VM's record on the same server must not leak into this one.
		s.Register(imds.Record{InstanceID: "i-other", Hostname: "other", UserData: userdata("other", "wrong VM")})
		s.ListenVM("i-other", "127.0.0.1:0")
		addr, err := s.ListenVM("i-0e2e000000000001", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		netdev, err := imds.QEMUUserNetdev("n0", []string{self}, "restrict=on")
		if err != nil {
			t.Fatal(err)
		}
		c := boot(t, kernel, initrd, []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"},
			[]string{relayEnv + "=" + addr.String()})
		check(t, c, map[string]string{"E2E-RC": "0", "E2E-PROVIDER": "AWS", "E2E-HOSTNAME": "vm-imds",
			"E2E-MESSAGE": "hello from the metadata server", "E2E-MODE": "640", "E2E-INSTANCE": "i-0e2e000000000001",
			"E2E-KEYS": "ssh-ed25519 AAAAE2E e2e"})
	})
}

func check(t *testing.T, console string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := marker(console, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("console:\n%s", console)
	}
}
