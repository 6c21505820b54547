package sysinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ModuleDeps is a parsed modules.dep: module path (relative to lib/modules/VERSION) to the
// paths of all its dependencies, listed as depmod does (load them from last to first).
type ModuleDeps struct {
	Order []string
	Deps  map[string][]string
}

// ParseModulesDep reads depmod's modules.dep format.
func ParseModulesDep(r io.Reader) (*ModuleDeps, error) {
	md := &ModuleDeps{Deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		if !ok || mod == "" {
			return nil, fmt.Errorf("modules.dep line %d: no ':'", n)
		}
		for _, p := range append([]string{mod}, strings.Fields(deps)...) {
			if strings.Contains(p, "..") || filepath.IsAbs(p) {
				return nil, fmt.Errorf("modules.dep line %d: bad path %q", n, p)
			}
		}
		if _, dup := md.Deps[mod]; !dup {
			md.Order = append(md.Order, mod)
		}
		md.Deps[mod] = strings.Fields(deps)
	}
	return md, sc.Err()
}

// LoadOrder returns every module of md in an order where dependencies come first.
func (md *ModuleDeps) LoadOrder() []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range md.Order {
		deps := md.Deps[m]
		for i := len(deps) - 1; i >= 0; i-- {
			if !seen[deps[i]] {
				seen[deps[i]] = true
				out = append(out, deps[i])
			}
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// LoadModules loads every module listed in /lib/modules/RELEASE/modules.dep (the modules the
// kernel image chose to ship), dependencies first. Already loaded or built-in modules are fine.
// It returns how many were loaded and the errors of those that failed.
func LoadModules(root string) (int, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, err
	}
	release := unix.ByteSliceToString(u.Release[:])
	dir := filepath.Join(root, "lib", "modules", release)
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	md, err := ParseModulesDep(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	n := 0
	var errs []error
	for _, m := range md.LoadOrder() {
		if err := loadModule(filepath.Join(dir, m)); err != nil {
			errs = append(errs, fmt.Errorf("load %s: %w", m, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == unix.EEXIST {
		return nil
	}
	if err == unix.ENOEXEC || err == unix.EINVAL || err == unix.ENOSYS {
		// compressed modules need the kernel to decompress; fall back to init_module on the
		// raw bytes, which only works for uncompressed ones.
		data, rerr := os.ReadFile(path)
		if rerr != nil {
			return err
		}
		if ierr := unix.InitModule(data, ""); ierr != nil && ierr != unix.EEXIST {
			return ierr
		}
		return nil
	}
	return err
}
