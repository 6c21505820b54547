package sysinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

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
	return md.loadAll(func(m string) error { return loadModule(filepath.Join(dir, m)) })
}

// loadAll loads every module, each as soon as all its dependencies are loaded, several at
// once: module initialisation often waits for hardware (probing a bus), and those waits
// overlap. A module whose dependency failed is not tried.
func (md *ModuleDeps) loadAll(load func(string) error) (int, error) {
	order := md.LoadOrder()
	done := make(map[string]chan struct{}, len(order))
	failed := make(map[string]bool)
	for _, m := range order {
		done[m] = make(chan struct{})
	}
	var mu sync.Mutex
	var errs []error
	n := 0
	var wg sync.WaitGroup
	for _, m := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[m])
			for _, d := range md.Deps[m] {
				if ch, ok := done[d]; ok {
					<-ch
				}
				mu.Lock()
				f := failed[d]
				mu.Unlock()
				if f {
					mu.Lock()
					failed[m] = true
					errs = append(errs, fmt.Errorf("load %s: dependency %s failed", m, d))
					mu.Unlock()
					return
				}
			}
			err := load(m)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[m] = true
				errs = append(errs, fmt.Errorf("load %s: %w", m, err))
				return
			}
			n++
		}()
	}
	wg.Wait()
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
