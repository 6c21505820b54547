package sysinit

import (
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper collects the exit status of every child (and, as PID 1 or a subreaper, of every
// orphan) and hands it to whoever waits for that pid.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
	exited  map[int]exitRecord
}

type exitRecord struct {
	status unix.WaitStatus
	at     time.Time
}

// NewReaper starts reaping on SIGCHLD.
func NewReaper() *Reaper {
	r := &Reaper{waiters: map[int]chan unix.WaitStatus{}, exited: map[int]exitRecord{}}
	sig := make(chan os.Signal, 64)
	signal.Notify(sig, unix.SIGCHLD)
	go func() {
		for range sig {
			r.reap()
		}
	}()
	// also poll now and then, in case a signal was coalesced before Notify.
	go func() {
		for range time.Tick(2 * time.Second) {
			r.reap()
		}
	}()
	return r
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
		} else {
			r.exited[pid] = exitRecord{ws, time.Now()}
			for p, rec := range r.exited {
				if time.Since(rec.at) > 5*time.Minute {
					delete(r.exited, p)
				}
			}
		}
		r.mu.Unlock()
	}
}

// Watch returns a channel that receives pid's exit status once. Call it as soon as the pid is
// known; a status that arrived before is delivered too.
func (r *Reaper) Watch(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		ch <- rec.status
		return ch
	}
	r.waiters[pid] = ch
	return ch
}

// Run starts argv with the given stdio files and waits for it to exit.
func (r *Reaper) Run(argv []string, env []string, stdin, stdout, stderr *os.File) (unix.WaitStatus, error) {
	r.mu.Lock() // hold the lock so the reaper cannot miss the pid between start and Watch
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: env, Files: []*os.File{stdin, stdout, stderr}})
	if err != nil {
		r.mu.Unlock()
		return 0, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[p.Pid] = ch
	r.mu.Unlock()
	p.Release()
	return <-ch, nil
}

// describe turns a wait status into words for the console.
func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "killed by signal " + ws.Signal().String()
	default:
		return "stopped"
	}
}
