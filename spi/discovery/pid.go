package discovery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's start time; 100 on every Linux ABI
// Go supports.
const clockTicks = 100

// Live reports whether the PID recorded in <dir>/<name>.pid is a live process that wrote it.
// A PID whose process started after the pid file was written belongs to another program that
// reused the number (after a crash or a reboot): that file is stale, not live.
func Live(dir, name string) (pid int, live bool, err error) {
	path := filepath.Join(dir, name+".pid")
	pid, err = ReadPID(dir, name)
	if err != nil {
		return 0, false, err
	}
	if !ProcessAlive(pid) {
		return pid, false, nil
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return pid, false, err
	}
	if started, ok := processStart(pid); ok && started.After(fi.ModTime().Add(2*time.Second)) {
		return pid, false, nil
	}
	return pid, true, nil
}

// processStart returns when a process started, from /proc (Linux); ok is false elsewhere.
func processStart(pid int) (time.Time, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Time{}, false
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	bt, err := bootTime()
	if err != nil {
		return time.Time{}, false
	}
	return bt.Add(time.Duration(ticks) * time.Second / clockTicks), true
}

func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, errors.New("no btime in /proc/stat")
}
