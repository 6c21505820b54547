package sysinit

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Main is PID 1: boot, run the containers, wait for a shutdown request, shut down. It never
// returns.
func Main(args []string) {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "mobykit init: must run as PID 1")
		os.Exit(1)
	}
	// runc cannot pivot_root out of the kernel's initial rootfs. By default init re-executes
	// itself in a bind mount of the rootfs (no copy), from which pivot_root works;
	// mobykit.switchroot on the kernel command line copies the root to a tmpfs instead, as
	// LinuxKit's init does. If both fail, containers run with runc --no-pivot.
	noPivot := false
	if NeedsSwitchRoot(args) {
		if d, ok, err := ParseRootDisk(readCmdline()); err != nil {
			fmt.Fprintf(os.Stdout, "mobykit init: %v\n", err)
		} else if ok {
			err := d.Boot(args) // executes the root disk's init on success
			fmt.Fprintf(os.Stdout, "mobykit init: booting from %s failed: %v\n", d.Device, err)
			os.Exit(1)
		}
	}
	if NeedsSwitchRoot(args) {
		var err error
		if cmdlineHas("mobykit.switchroot") {
			err = SwitchRoot(args[0]) // re-executes init on success
		} else {
			err = BindRoot()
		}
		if err != nil {
			fmt.Fprintf(os.Stdout, "mobykit init: leaving the initial rootfs failed, containers run with runc --no-pivot: %v\n", err)
			noPivot = true
		}
	}
	mountErr := EarlyMounts()
	reopenConsole()
	con := NewConsole(os.Stdout)
	var u unix.Utsname
	unix.Uname(&u)
	con.Printf("init started (kernel %s, uptime %s)", unix.ByteSliceToString(u.Release[:]), uptime())
	if mountErr != nil {
		con.Printf("mounts: %v", mountErr)
	}
	if err := linkUp("lo"); err != nil {
		con.Printf("lo: %v", err)
	}
	reaper := NewReaper()
	runc, runcErr := FindRunc("/")
	if runc != "" {
		// Run runc once while the modules load: under emulation its first run is the slowest
		// (its code is translated for the first time), and module loading leaves the CPU idle
		// while devices are probed.
		go func() {
			devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return
			}
			defer devnull.Close()
			reaper.Run([]string{runc, "--version"}, nil, devnull, devnull, devnull)
		}()
	}
	start, idle0 := time.Now(), idleTime()
	n, err := LoadModules("/")
	if err != nil {
		con.Printf("modules: %v", err)
	}
	if n > 0 {
		took := time.Since(start)
		con.Printf("loaded %d kernel modules in %s (CPU idle %s of it)", n, took.Round(time.Millisecond), (idleTime() - idle0).Round(time.Millisecond))
	}
	// Volumes before any container binds them, after the modules (overlay may be one).
	vols, err := MountVolumes("/")
	if len(vols) > 0 {
		con.Printf("volumes mounted: %s", strings.Join(vols, ", "))
	}
	if err != nil {
		con.Printf("volumes: %v", err)
	}
	setHostname(con) // after the modules: the fallback name uses the first NIC's address
	requests := ShutdownRequests(con)

	sys := &System{Root: "/", Console: con, Reaper: reaper, NoPivot: noPivot}
	sys.Backoff.Min, sys.Backoff.Max = time.Second, 30*time.Second
	if runcErr != nil {
		con.Printf("%v", runcErr)
	}
	sys.Runc = runc
	booted := make(chan struct{})
	go func() {
		defer close(booted)
		if runc == "" {
			return
		}
		sys.RunOnce(OnbootDir)
		if err := sys.StartServices(); err != nil {
			con.Printf("services: %v", err)
		}
		con.Printf("boot complete (uptime %s)", uptime())
		sys.RunCleanups()
	}()

	req := <-requests
	con.Printf("%s requested (%s)", req.Action, req.Cause)
	select {
	case <-booted:
	case <-time.After(10 * time.Second):
		con.Printf("boot still running; shutting down anyway")
	}
	if runc != "" {
		sys.StopServices(10 * time.Second)
		sys.RunOnce(OnshutdownDir)
		sys.WaitCleanups()
	}
	KillAll(unix.SIGTERM)
	waitForChildren(2 * time.Second)
	KillAll(unix.SIGKILL)
	unix.Sync()
	con.Printf("%s now (uptime %s)", req.Action, uptime())
	unix.Reboot(req.Action.RebootCmd())
	// reboot(2) only returns on failure
	con.Printf("reboot(2) failed; halting here")
	for {
		time.Sleep(time.Hour)
	}
}

// cmdlineHas reports whether the kernel command line holds word (alone or as word=...).
// readCmdline returns the kernel command line, "" when /proc cannot be read.
func readCmdline() string {
	os.MkdirAll("/proc", 0o555)
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil && err != unix.EBUSY {
		return ""
	}
	defer unix.Unmount("/proc", unix.MNT_DETACH)
	data, _ := os.ReadFile("/proc/cmdline")
	return string(data)
}

func cmdlineHas(word string) bool {
	for _, f := range strings.Fields(readCmdline()) {
		if f == word || strings.HasPrefix(f, word+"=") {
			return true
		}
	}
	return false
}

// reopenConsole points stdin, stdout and stderr at /dev/console (the initramfs may have had
// no /dev/console when the kernel started init).
func reopenConsole() {
	f, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for fd := 0; fd < 3; fd++ {
		unix.Dup3(int(f.Fd()), fd, 0)
	}
	f.Close()
}

// setHostname sets the hostname from /etc/hostname (a `files:` entry; the assembler keeps
// images' own out), else, as LinuxKit does, from the first network interface's MAC address:
// mobykit-525400123456. The metadata agent may set another one later.
func setHostname(con *Console) {
	name := ""
	if data, err := os.ReadFile("/etc/hostname"); err == nil {
		name = strings.TrimSpace(string(data))
	}
	if name == "" {
		name = "mobykit"
		if ifs, err := net.Interfaces(); err == nil {
			for _, i := range ifs {
				if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) > 0 {
					name = "mobykit-" + strings.ReplaceAll(i.HardwareAddr.String(), ":", "")
					break
				}
			}
		}
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		con.Printf("hostname %s: %v", name, err)
	}
}

// procUptime returns the fields of /proc/uptime: seconds since boot and seconds the CPUs have
// spent idle (summed over CPUs), as the kernel writes them; nil if unreadable.
func procUptime() []string {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}

func uptime() string {
	f := procUptime()
	if len(f) == 0 {
		return "?"
	}
	return f[0] + "s"
}

// waitForChildren waits until no process but init is left, or d passes.
func waitForChildren(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		others := false
		for _, e := range ents {
			if pid := e.Name(); pid != "1" && pid[0] >= '0' && pid[0] <= '9' {
				if st, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil && !isKernelThread(string(st)) {
					others = true
					break
				}
			}
		}
		if !others {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isKernelThread tells kernel threads (children of kthreadd, pid 2) from processes.
func isKernelThread(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(stat[i+1:])
	return len(f) > 1 && (f[1] == "2" || f[1] == "0")
}

// idleTime is the time the CPUs have spent idle since boot (the second field of
// /proc/uptime, summed over CPUs), 0 if unknown.
func idleTime() time.Duration {
	f := procUptime()
	if len(f) < 2 {
		return 0
	}
	s, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
