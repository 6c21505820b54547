package pkgbuild

import (
	"archive/tar"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/internal/testenv"
)

// TestSelectKernelDebian picks modules out of Debian's real cloud kernel package (unpacked by
// testenv) and checks the dependencies read from the modules' .modinfo.
func TestSelectKernelDebian(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches Debian's kernel")
	}
	files := debianKernelFiles(t)
	kp, err := selectKernel(files, []string{"virtio_net", "overlay", "sr_mod"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range kp.Modules {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	got := strings.Join(names, " ")
	for _, want := range []string{"virtio_net", "net_failover", "failover", "overlay", "sr_mod", "cdrom", "scsi_mod"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("modules %q lack %s", got, want)
		}
	}
	dep := ModulesDep(kp.Modules)
	var line string
	for _, l := range strings.Split(dep, "\n") {
		if strings.HasPrefix(l, "kernel/drivers/net/virtio_net.ko:") {
			line = l
		}
	}
	if !strings.Contains(line, "net_failover.ko") || !strings.Contains(line, "failover.ko") ||
		strings.Index(line, "net_failover.ko") > strings.Index(line, " kernel/net/core/failover.ko") {
		t.Errorf("virtio_net's modules.dep line: %q", line)
	}
	if _, err := selectKernel(files, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("unknown module: %v", err)
	}
	if kp.Version == "" || len(kp.Kernel) < 1<<20 {
		t.Errorf("kernel %q: %d bytes", kp.Version, len(kp.Kernel))
	}
}

// debianKernelFiles reads Debian's cloud kernel package (unpacked by testenv) as a build reads
// the .deb: contents of the kernel, the modules and modules.builtin.
func debianKernelFiles(t *testing.T) []DebFile {
	t.Helper()
	dir := testenv.KernelDir(t)
	var files []DebFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f := DebFile{Path: filepath.ToSlash(rel), Type: tar.TypeReg, Mode: 0o644}
		if strings.HasPrefix(rel, "boot/vmlinuz-") || strings.HasSuffix(rel, ".ko") || strings.HasSuffix(rel, "modules.builtin") {
			if f.Data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestKernelRecipeCloudModules resolves images/kernel's module list against Debian's real
// cloud kernel and checks that the drivers EC2 and GCE machines boot with are in the image,
// as modules or built in: ENA, NVMe (EBS), gVNIC and virtio (GCE).
func TestKernelRecipeCloudModules(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches Debian's kernel")
	}
	r, err := LoadRecipe("../images/kernel")
	if err != nil {
		t.Fatal(err)
	}
	if r.Kernel == nil {
		t.Fatal("images/kernel is not a kernel recipe")
	}
	files := debianKernelFiles(t)
	kp, err := selectKernel(files, r.Kernel.Modules)
	if err != nil {
		t.Fatalf("images/kernel modules: %v", err)
	}
	have := map[string]bool{}
	for _, m := range kp.Modules {
		have[m.Name] = true
	}
	for _, l := range strings.Split(string(kp.Builtin), "\n") {
		if l != "" {
			have[modName(l)] = true
		}
	}
	for _, want := range []string{"ena", "nvme", "nvme_core", "gve", "virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi"} {
		if !have[want] {
			t.Errorf("the kernel image has no %s, neither as a module nor built in", want)
		}
	}
}
