package sysinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Layout folders, relative to the root.
const (
	OnbootDir     = "containers/onboot"
	ServicesDir   = "containers/services"
	OnshutdownDir = "containers/onshutdown"
)

// System runs the containers of a root filesystem laid out by the assembler.
type System struct {
	Root    string // "/" in the VM
	Runc    string // runc binary
	Console *Console
	Reaper  *Reaper
	// NoPivot runs containers with runc --no-pivot (when / could not leave the initramfs).
	NoPivot bool
	// Env is runc's environment; default a PATH only.
	Env []string
	// Prepare does runtime.json's filesystem part; default PrepareFilesystem (tests replace it).
	Prepare func(bundle string, rt *Runtime) error
	// StartSlots bounds how many services are being started (runc run) at once; 0 means one
	// per CPU. Starting a container is CPU-bound (runc, namespaces, mounts), so starting more
	// at once than there are CPUs only delays each of them: on a 1-vCPU VM under emulation the
	// first service came up after all three had been started together (~1 s) instead of after
	// its own start (~0.3 s), and the last one no sooner.
	StartSlots int
	// Backoff bounds service restarts: the first restart waits Backoff.Min, each quick exit
	// doubles the wait up to Backoff.Max; a service that ran longer than Backoff.Max starts over.
	Backoff struct{ Min, Max time.Duration }

	mu       sync.Mutex
	services map[string]*service
	cleanups []func()
	cleaned  bool
	wg       sync.WaitGroup
	started  sync.WaitGroup // services not yet through their first start
	slots    chan struct{}  // see StartSlots
}

// FindRunc returns the first runc found in the usual places under root.
func FindRunc(root string) (string, error) {
	for _, p := range []string{"usr/bin/runc", "usr/sbin/runc", "bin/runc", "sbin/runc", "usr/local/bin/runc"} {
		if st, err := os.Stat(filepath.Join(root, p)); err == nil && st.Mode().IsRegular() {
			return "/" + p, nil
		}
	}
	return "", errors.New("no runc in /usr/bin, /usr/sbin, /bin or /sbin (add mobykit/runc to init:)")
}

// bundles lists the container folders of dir, sorted by name.
func (s *System) bundles(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Root, dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (s *System) env() []string {
	if s.Env != nil {
		return s.Env
	}
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
}

// quiet runs runc with its output discarded.
func (s *System) quiet(args ...string) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer devnull.Close()
	s.runc(devnull, devnull, args...)
}

func (s *System) runc(stdout, stderr *os.File, args ...string) (unix.WaitStatus, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	return s.Reaper.Run(append([]string{s.Runc}, args...), s.env(), devnull, stdout, stderr)
}

// ContainerID is the runc ID of a container: a service keeps its bare name (what a user
// passes to runc exec or kill), onboot and onshutdown containers get their section as a
// prefix ("onboot.000-format"). Their folder names are unique within a section only, and
// they share runc's state root with the services, so a service named "000-format" must not
// meet onboot's "000-format" (whose state is deleted only after the services start).
func ContainerID(kind, name string) string {
	if kind == "service" {
		return name
	}
	return kind + "." + name
}

// start prepares and starts the container in bundle, with its output on out, and returns the
// pid of its process and a channel that gets its exit status.
// The filesystem is prepared once: *prepared records it (a restarted service skips it).
func (s *System) start(kind, name, bundle string, out *os.File, prepared *bool) (int, <-chan unix.WaitStatus, error) {
	rt, err := ReadRuntime(bundle)
	if err != nil {
		return 0, nil, err
	}
	if !*prepared {
		prepare := s.Prepare
		if prepare == nil {
			prepare = PrepareFilesystem
		}
		if err := prepare(bundle, rt); err != nil {
			return 0, nil, err
		}
		*prepared = true
	}
	id := ContainerID(kind, name)
	pidFile := filepath.Join("/run", "mobykit-init", kind+"-"+name+".pid")
	os.MkdirAll(filepath.Dir(pidFile), 0o755)
	os.Remove(pidFile)
	// runc run --detach creates and starts in one go (one runc process less, which counts
	// under emulation); create, prepare, start when the runtime config needs the pid first.
	needsPid := len(rt.Interfaces) > 0 || rt.BindNS != (Namespaces{})
	verb := []string{"run", "--detach"}
	if needsPid {
		verb = []string{"create"}
	}
	args := append(verb, "--bundle", bundle, "--pid-file", pidFile)
	if s.NoPivot {
		args = append(args, "--no-pivot")
	}
	ws, err := s.runc(out, out, append(args, id)...)
	if err != nil {
		return 0, nil, fmt.Errorf("runc %s: %w", verb[0], err)
	}
	if ws.ExitStatus() != 0 || !ws.Exited() {
		s.quiet("delete", "--force", id)
		return 0, nil, fmt.Errorf("runc %s failed (%s); see its message above", verb[0], describe(ws))
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, nil, fmt.Errorf("runc %s: pid file: %w", verb[0], err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, nil, fmt.Errorf("runc %s: pid file %q: %w", verb[0], data, err)
	}
	exited := s.Reaper.Watch(pid)
	if !needsPid {
		return pid, exited, nil
	}
	if err := PrepareProcess(pid, rt); err != nil {
		s.quiet("delete", "--force", id)
		return 0, nil, err
	}
	ws, err = s.runc(out, out, "start", id)
	if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		s.quiet("delete", "--force", id)
		if err == nil {
			err = fmt.Errorf("runc start failed (%s)", describe(ws))
		}
		return 0, nil, err
	}
	return pid, exited, nil
}

// RunOnce runs each container of dir (onboot or onshutdown) in order, to completion, with its
// output on the console. Failures are reported and do not stop the others.
func (s *System) RunOnce(dir string) error {
	names, err := s.bundles(dir)
	if err != nil {
		return err
	}
	kind := filepath.Base(dir)
	var errs []error
	for _, name := range names {
		bundle := filepath.Join(s.Root, dir, name)
		start := time.Now()
		prepared := false
		_, exited, err := s.start(kind, name, bundle, os.Stdout, &prepared)
		if err != nil {
			s.Console.Printf("%s %s failed to start: %v", kind, name, err)
			errs = append(errs, fmt.Errorf("%s %s: %w", kind, name, err))
			Cleanup(bundle)
			continue
		}
		ws := <-exited
		// removing the finished container's state need not hold up the boot (each runc run
		// costs under emulation): done once the services are started, or at once at shutdown
		s.later(func() {
			s.quiet("delete", "--force", ContainerID(kind, name))
			Cleanup(bundle)
		}, kind == "onboot")
		if !ws.Exited() || ws.ExitStatus() != 0 {
			s.Console.Printf("%s %s failed: %s", kind, name, describe(ws))
			errs = append(errs, fmt.Errorf("%s %s: %s", kind, name, describe(ws)))
			continue
		}
		s.Console.Printf("%s %s done in %s", kind, name, time.Since(start).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

type service struct {
	name, bundle string
	pid          int
	prepared     bool
	stop         chan struct{}
	done         chan struct{}
}

// StartServices starts every service and keeps each running: when one exits it is started
// again after a backoff, with the reason on the console. Output goes to /var/log/NAME.log and
// to the console.
func (s *System) StartServices() error {
	names, err := s.bundles(ServicesDir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.services == nil {
		s.services = map[string]*service{}
	}
	if s.slots == nil {
		n := s.StartSlots
		if n <= 0 {
			n = runtime.NumCPU()
		}
		s.slots = make(chan struct{}, n)
	}
	for _, name := range names {
		svc := &service{name: name, bundle: filepath.Join(s.Root, ServicesDir, name), stop: make(chan struct{}), done: make(chan struct{})}
		s.services[name] = svc
		s.started.Add(1)
		go s.supervise(svc)
	}
	return nil
}

func (s *System) supervise(svc *service) {
	defer close(svc.done)
	wait := s.Backoff.Min
	first := true
	for {
		// services start in name order, as many at once as there are CPUs; one still waiting
		// for its turn when the shutdown comes is not started (StopServices' kill would miss it)
		if !s.acquireSlot(svc.stop) {
			if first {
				s.started.Done()
			}
			s.Console.Printf("service %s stopped", svc.name)
			return
		}
		out, copied, err := s.Console.logPipe(svc.name, filepath.Join(s.Root, "var/log", svc.name+".log"))
		if err != nil {
			s.Console.Printf("service %s: log: %v", svc.name, err)
			out, copied = os.Stdout, nil
		}
		started := time.Now()
		pid, exited, err := s.start("service", svc.name, svc.bundle, out, &svc.prepared)
		<-s.slots
		if first {
			first = false
			s.started.Done()
		}
		if out != os.Stdout {
			out.Close()
		}
		var reason string
		if err != nil {
			reason = "failed to start: " + err.Error()
		} else {
			s.mu.Lock()
			svc.pid = pid
			s.mu.Unlock()
			s.Console.Printf("service %s started (pid %d)", svc.name, pid)
			ws := <-exited
			s.quiet("delete", "--force", svc.name)
			reason = "exited: " + describe(ws)
		}
		if copied != nil {
			select {
			case <-copied:
			case <-time.After(time.Second):
			}
		}
		select {
		case <-svc.stop:
			s.Console.Printf("service %s stopped", svc.name)
			return
		default:
		}
		if time.Since(started) > s.Backoff.Max {
			wait = s.Backoff.Min
		}
		s.Console.Printf("service %s %s; restarting in %s", svc.name, reason, wait)
		select {
		case <-svc.stop:
			s.Console.Printf("service %s stopped", svc.name)
			return
		case <-time.After(wait):
		}
		wait *= 2
		if wait > s.Backoff.Max {
			wait = s.Backoff.Max
		}
	}
}

// acquireSlot waits for a start slot; it returns false, holding none, once stop is closed.
func (s *System) acquireSlot(stop <-chan struct{}) bool {
	select {
	case s.slots <- struct{}{}:
	case <-stop:
		return false
	}
	select {
	case <-stop:
		<-s.slots
		return false
	default:
		return true
	}
}

// StopServices asks every service to stop (SIGTERM through runc kill), and kills those still
// running after grace.
func (s *System) StopServices(grace time.Duration) {
	s.mu.Lock()
	svcs := make([]*service, 0, len(s.services))
	for _, svc := range s.services {
		close(svc.stop)
		svcs = append(svcs, svc)
	}
	s.mu.Unlock()
	for _, svc := range svcs {
		s.quiet("kill", svc.name, "TERM")
	}
	deadline := time.Now().Add(grace)
	for _, svc := range svcs {
		select {
		case <-svc.done:
		case <-time.After(time.Until(deadline)):
			s.Console.Printf("service %s did not stop within %s; killing it", svc.name, grace)
			s.quiet("kill", svc.name, "KILL")
			select {
			case <-svc.done:
			case <-time.After(5 * time.Second):
				s.Console.Printf("service %s: still not stopped; going on", svc.name)
			}
		}
	}
}

// later queues f (when deferred) or runs it now.
func (s *System) later(f func(), deferred bool) {
	s.mu.Lock()
	if deferred && !s.cleaned {
		s.cleanups = append(s.cleanups, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f()
}

// RunCleanups removes the finished onboot containers in the background, once every service
// has been started (so they do not compete for the CPU with the services' start).
func (s *System) RunCleanups() {
	s.mu.Lock()
	fs := s.cleanups
	s.cleanups, s.cleaned = nil, true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.started.Wait()
		for _, f := range fs {
			f()
		}
	}()
}

// WaitCleanups runs the pending cleanups and waits for them.
func (s *System) WaitCleanups() {
	s.RunCleanups()
	s.wg.Wait()
}
