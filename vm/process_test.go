package vm

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		state    byte
		start    uint64
		wantErr  bool
	}{
		{"plain", "1234 (qemu) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100", 'S', 98765, false},
		{"spaces and parens in comm", "7 (a (b) c) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0", 'Z', 42, false},
		{"truncated", "7 (x) S 1 2 3", 0, 0, true},
		{"no paren", "7 x S", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := parseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && (st.state != tc.state || st.startTime != tc.start) {
				t.Fatalf("got %c %d, want %c %d", st.state, st.startTime, tc.state, tc.start)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 5 1000 100"))
	f.Fuzz(func(t *testing.T, b []byte) { parseStat(b) })
}

func TestProcessLifecycle(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "vm-1")
	// sh -c puts the marker in $0, so it appears in the command line.
	p, _, err := Start(StartOptions{Argv: []string{"/bin/sh", "-c", "trap '' TERM; sleep 30", marker}, Marker: marker})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background(), nil, 0) })
	if !p.Alive() {
		t.Fatal("just started process not alive")
	}
	// Same PID, another start time: not ours.
	other := *p
	other.StartTime++
	if other.Alive() {
		t.Fatal("process with a different start time reported alive")
	}
	other = *p
	other.Marker = filepath.Join(dir, "vm-2")
	if other.Alive() {
		t.Fatal("process without the marker reported alive")
	}
	// Round trip through the state file, as a restarted plugin would.
	d := Dir(dir)
	if err := d.WriteJSON(ProcessFile, p); err != nil {
		t.Fatal(err)
	}
	var q Process
	if err := d.ReadJSON(ProcessFile, &q); err != nil {
		t.Fatal(err)
	}
	if !q.Alive() {
		t.Fatal("process read back from its record not alive")
	}
	calls := 0
	start := time.Now()
	// The shell ignores SIGTERM and the graceful request does nothing: Stop must escalate.
	err = q.Stop(context.Background(), func(context.Context) error { calls++; return nil }, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || q.Alive() {
		t.Fatalf("graceful calls = %d, alive = %v", calls, q.Alive())
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("stopped after %v, before the grace period", d)
	}
	if err := q.Stop(context.Background(), nil, 0); err != nil {
		t.Fatalf("stopping a stopped process: %v", err)
	}
}

func TestStartRequiresMarker(t *testing.T) {
	if _, _, err := Start(StartOptions{Argv: []string{"/bin/true"}, Marker: "/nowhere"}); err == nil {
		t.Fatal("started a process whose command line lacks the marker")
	}
}

func TestStore(t *testing.T) {
	s := Store{Root: filepath.Join(t.TempDir(), "vms")}
	if ids, err := s.List(); err != nil || len(ids) != 0 {
		t.Fatalf("empty store: %v %v", ids, err)
	}
	for _, bad := range []string{"", "..", "../x", "a/b", ".hidden", "-x"} {
		if _, err := s.Create(bad); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
	d, err := s.Create("vm-b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("vm-b"); err == nil {
		t.Fatal("created the same folder twice")
	}
	s.Create("vm-a")
	os.WriteFile(filepath.Join(s.Root, "stray-file"), nil, 0o644)
	if err := d.WriteJSON(TagsFile, map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	ids, _ := s.List()
	if len(ids) != 2 || ids[0] != "vm-a" || ids[1] != "vm-b" {
		t.Fatalf("List = %v", ids)
	}
	if err := s.Remove("vm-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("vm-b"); !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if err := s.Remove("vm-b"); err != nil {
		t.Fatalf("Remove twice: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestStateFoldersClosedToOtherUsers: state folders hold userdata and sockets; other local users
// cannot enter the instances folder (even one an older version made 0755) or a state folder.
func TestStateFoldersClosedToOtherUsers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "plugin")
	if err := os.MkdirAll(filepath.Join(root, "instances"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "instances"), 0o755)
	_, st, err := OpenPluginState(root)
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.Create("vm-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{st.Root, string(d)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %#o: open to other users", p, fi.Mode().Perm())
		}
	}
}

// TestStartedProcessIsAliveAtOnce: Start returns only once the new command line (with the
// marker) is visible, so Alive right after Start never mistakes a VM still finishing its exec
// for a vanished one ("exited at once" with no message, seen under load).
func TestStartedProcessIsAliveAtOnce(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "marker")
	for i := range 100 {
		p, cmd, err := Start(StartOptions{Argv: []string{"sh", "-c", "sleep 5; :", marker}, Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		alive := p.Alive()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its session: sh and sleep
		if !alive {
			t.Fatalf("start %d: not Alive right after Start", i)
		}
	}
}

// TestShutdownSaysHow: Shutdown tells a process that left when asked from one that had to be
// signalled, which is what lets `mobykit run` call a requested power-off a success.
func TestShutdownSaysHow(t *testing.T) {
	start := func(script string) *Process {
		marker := filepath.Join(t.TempDir(), "vm")
		p, _, err := Start(StartOptions{Argv: []string{"/bin/sh", "-c", script, marker}, Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(context.Background(), nil, 0) })
		time.Sleep(100 * time.Millisecond) // let the shell set its traps
		return p
	}
	usr1 := func(p *Process) func(context.Context) error {
		return func(context.Context) error { return p.Signal(syscall.SIGUSR1) }
	}
	for _, c := range []struct {
		name, script string
		want         Stopped
	}{
		{"leaves when asked", "trap 'exit 0' USR1; while :; do sleep 0.05; done", Graceful},
		{"needs SIGTERM", "trap '' USR1; while :; do sleep 0.05; done", Terminated},
		{"needs SIGKILL", "trap '' USR1 TERM; while :; do sleep 0.05; done", Killed},
	} {
		p := start(c.script)
		got, err := p.Shutdown(context.Background(), usr1(p), 300*time.Millisecond)
		if err != nil || got != c.want {
			t.Errorf("%s: Shutdown = %v, %v; want %v", c.name, got, err, c.want)
		}
		if p.Alive() {
			t.Errorf("%s: still alive", c.name)
		}
		if got, err := p.Shutdown(context.Background(), usr1(p), time.Second); got != AlreadyGone || err != nil {
			t.Errorf("%s: Shutdown of a stopped process = %v, %v; want %v", c.name, got, err, AlreadyGone)
		}
	}
}
