package assembler

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestKernelSquashFSMatchesTar: the squashfs root file system holds exactly what the tar
// format holds once unpacked (later entries replacing earlier ones, hard links kept), and two
// builds give the same bytes.
func TestKernelSquashFSMatchesTar(t *testing.T) {
	unsquashfs, err := exec.LookPath("unsquashfs")
	if err != nil {
		t.Skip("unsquashfs not installed (apt-get install squashfs-tools); skipping")
	}
	rootFSMatchesTar(t, "kernel+squashfs", "test-squashfs.img", func(img, dir string) *exec.Cmd {
		return exec.Command(unsquashfs, "-n", "-d", dir, img)
	}, true)
}

// TestKernelISOMatchesTar is the same for kernel+iso, read back by xorriso (Rock Ridge).
func TestKernelISOMatchesTar(t *testing.T) {
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		t.Skip("xorriso not installed (apt-get install xorriso); skipping")
	}
	rootFSMatchesTar(t, "kernel+iso", "test.iso", func(img, dir string) *exec.Cmd {
		return exec.Command(xorriso, "-osirrox", "on", "-indev", img, "-extract", "/", dir)
	}, false)
}

// TestKernelEROFSMatchesTar is the same for kernel+erofs, read back by erofs-utils'
// fsck.erofs, which checks the image as it extracts it (it extracts hard links as copies: the
// erofs package's own test checks those with dump.erofs).
func TestKernelEROFSMatchesTar(t *testing.T) {
	fsck, err := exec.LookPath("fsck.erofs")
	if err != nil {
		t.Skip("fsck.erofs not installed (apt-get install erofs-utils); skipping")
	}
	rootFSMatchesTar(t, "kernel+erofs", "test-erofs.img", func(img, dir string) *exec.Cmd {
		return exec.Command(fsck, "--extract="+dir, img)
	}, false)
}

func rootFSMatchesTar(t *testing.T, format, file string, extract func(img, dir string) *exec.Cmd, links bool) {
	f := newFixture(t, memRegistry(t))
	f.build(t, "a", func(o *Options) { o.Formats = []string{format, "tar"} })
	f.build(t, "b", func(o *Options) { o.Formats = []string{format}; o.Compression = "zstd" })
	img := filepath.Join(f.dir, "a", file)
	if !bytes.Equal(mustRead(t, img), mustRead(t, filepath.Join(f.dir, "b", file))) {
		t.Errorf("%s: two builds (gzip and zstd initramfs) gave different images", format)
	}
	for _, n := range []string{"test-kernel", "test-cmdline"} {
		if _, err := os.Stat(filepath.Join(f.dir, "a", n)); err != nil {
			t.Error(err)
		}
	}
	sq, tr := filepath.Join(f.dir, "sq"), filepath.Join(f.dir, "tr")
	if out, err := extract(img, sq).CombinedOutput(); err != nil {
		t.Fatalf("extract: %v\n%s", err, out)
	}
	os.MkdirAll(tr, 0o755)
	if out, err := exec.Command("tar", "-xf", filepath.Join(f.dir, "a", "test.tar"), "-C", tr, "--numeric-owner").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	os.RemoveAll(filepath.Join(tr, "boot", "kernel"))
	os.RemoveAll(filepath.Join(tr, "boot", "cmdline"))
	type info struct {
		mode       os.FileMode
		nlink      uint64
		data, link string
	}
	list := func(root string) map[string]info {
		m := map[string]info{}
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, p)
			i := info{mode: fi.Mode()}
			if fi.Mode().IsRegular() {
				if links {
					i.nlink = uint64(fi.Sys().(*syscall.Stat_t).Nlink)
				}
				b, _ := os.ReadFile(p)
				i.data = string(b)
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				i.link, _ = os.Readlink(p)
			}
			m[rel] = i
			return nil
		})
		return m
	}
	a, b := list(sq), list(tr)
	for p, i := range b {
		if a[p] != i {
			t.Errorf("%s: squashfs %+v, tar %+v", p, a[p], i)
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			t.Errorf("%s: only in the squashfs", p)
		}
	}
	if links && a["bin/sh"].nlink != 2 {
		t.Errorf("bin/sh (a hard link of bin/busybox) has %d links", a["bin/sh"].nlink)
	}
}
