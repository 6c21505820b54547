package assembler

import (
	"archive/tar"
	"context"
	"crypto/md5"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/internal/testenv"
)

const bootScript = `#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
echo "MOBYKIT-BOOT motd=$(/bin/busybox cat /etc/motd) app=$(/bin/busybox cat /containers/onboot/000-first/lower/bin/app) links=$(/bin/busybox stat -c %h /bin/sh) same=$(test /bin/sh -ef /bin/busybox && echo yes) resolv=$(/bin/busybox readlink /etc/resolv.conf) web=$(/bin/busybox cat /containers/services/web/rootfs/bin/web) big=$(/bin/busybox md5sum </containers/onboot/001-big/lower/big | /bin/busybox cut -d' ' -f1)"
/bin/busybox poweroff -f
`

// TestBoot boots Debian's cloud kernel under QEMU on an initramfs made of
// several independently compressed segments, gzip, zstd and lz4, and checks that
// every segment was unpacked (files from the first and last ones, hard
// links intact). One segment is 12 MiB, its first 9 MiB random: for lz4 it
// is several legacy chunks, one of them incompressible.
func TestBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	qemu := testenv.RequireQEMU(t)
	busybox := testenv.RequireTool(t, "busybox", "busybox-static")
	kernel := mustRead(t, testenv.Kernel(t))
	bb := mustRead(t, busybox)
	host := memRegistry(t)
	push(t, host+"/kernel:boot", testImage(t, nil, []tf{{name: "kernel", data: string(kernel)}}))
	push(t, host+"/init:boot", testImage(t, nil, []tf{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/busybox", data: string(bb), mode: 0o755},
		{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
		{name: "init", data: bootScript, mode: 0o755},
	}))
	pushFixture(t, host) // app:1 and web:1
	big := make([]byte, 12<<20)
	rand.NewChaCha8([32]byte{7}).Read(big[:9<<20])
	for i := 9 << 20; i < len(big); i++ {
		big[i] = "compressible text\n"[i%18]
	}
	push(t, host+"/big:1", testImage(t, nil, []tf{{name: "big", data: string(big)}}))
	dir := t.TempDir()
	spec := writeSpec(t, dir, "boot.yml", fmt.Sprintf(`kernel:
  image: %[1]s/kernel:boot
  cmdline: "console=ttyS0 panic=-1"
  tar: none
init:
  - %[1]s/init:boot
onboot:
  - name: first
    image: %[1]s/app:1
  - name: big
    image: %[1]s/big:1
services:
  - name: web
    image: %[1]s/web:1
files:
  - path: etc/motd
    contents: "booted"
    mode: "0644"
`, host))
	for _, c := range []initrd.Compression{initrd.Gzip, initrd.Zstd, initrd.Lz4} {
		t.Run(string(c), func(t *testing.T) {
			out := filepath.Join(dir, string(c))
			res, err := BuildFiles(context.Background(), []string{spec}, Options{Name: "boot", OutputDir: out, CacheDir: filepath.Join(dir, "cache"), Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			if res.Segments < 4 {
				t.Fatalf("only %d segments", res.Segments)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, qemu, "-m", "256", "-nographic", "-monitor", "none", "-no-reboot",
				"-kernel", filepath.Join(out, "boot-kernel"), "-initrd", filepath.Join(out, "boot-initrd.img"),
				"-append", string(mustRead(t, filepath.Join(out, "boot-cmdline"))))
			got, err := cmd.CombinedOutput()
			line := ""
			for _, l := range strings.Split(string(got), "\n") {
				if strings.HasPrefix(l, "MOBYKIT-BOOT ") {
					line = strings.TrimSpace(l)
				}
				// The kernel goes on booting what it unpacked so far.
				if strings.Contains(l, "Initramfs unpacking failed") {
					t.Errorf("kernel: %s", strings.TrimSpace(l))
				}
			}
			want := fmt.Sprintf("MOBYKIT-BOOT motd=booted app=APP links=2 same=yes resolv=/run/resolvconf/resolv.conf web=WEB big=%x", md5.Sum(big))
			if line != want {
				tail := string(got)
				if len(tail) > 3000 {
					tail = tail[len(tail)-3000:]
				}
				t.Fatalf("boot output line %q, want %q (qemu: %v)\n%s", line, want, err, tail)
			}
		})
	}
}
