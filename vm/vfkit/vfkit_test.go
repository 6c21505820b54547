package vfkit

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/golden"
)

func TestArgsGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"kernel-nat-shared-disk-data", Config{CPUs: 2, MemoryMB: 512, Kernel: "/i/k", Initrd: "/i/initrd.img",
			Cmdline: "console=hvc0 a=b,c", Disks: []string{"/p/disks/web-1/disk0.img"}, DataISO: "/s/metadata.iso",
			NICs:    []NIC{{MAC: MAC("web-1")}, {Socket: "/var/run/vmnet-helper/web.sock", MAC: MAC("web-1/net:web")}},
			Console: "/s/console.log", RESTSocket: "/s/rest.sock"}},
		{"efi-disk", Config{EFIVarStore: "/s/efi-vars", BootDisk: "/s/disks/boot.img", NICs: []NIC{{}}, Console: "stdio"}},
		{"efi-iso", Config{Binary: "/opt/vfkit", EFIVarStore: "/s/efi-vars", BootISO: "/i/hello.iso"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.cfg.Args()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".args"), []byte(strings.Join(a, "\n")+"\n"))
		})
	}
}

// TestArgsRefuseOptionInjection: a path or command line that could end vfkit's
// "key=value,key=value" syntax early (a ',' in a path, a '"' in the quoted cmdline) would add
// options of the caller's choosing to a device; it is refused, naming the field.
func TestArgsRefuseOptionInjection(t *testing.T) {
	for name, c := range map[string]Config{
		"no boot":                   {},
		"kernel and efi":            {Kernel: "/k", EFIVarStore: "/v", BootDisk: "/d"},
		"efi without disk":          {EFIVarStore: "/v"},
		"kernel with boot disk":     {Kernel: "/k", BootDisk: "/d"},
		"relative kernel":           {Kernel: "k"},
		"comma in kernel":           {Kernel: "/a,cmdline=x"},
		"comma in disk":             {Kernel: "/k", Disks: []string{"/d,readonly"}},
		"quote in cmdline":          {Kernel: "/k", Cmdline: `a" ,initrd=/evil`},
		"newline in cmdline":        {Kernel: "/k", Cmdline: "a\nb"},
		"comma in socket":           {Kernel: "/k", NICs: []NIC{{Socket: "/s,mac=x"}}},
		"bad mac":                   {Kernel: "/k", NICs: []NIC{{MAC: "02:00:00:00:00"}}},
		"mac with comma":            {Kernel: "/k", NICs: []NIC{{MAC: "02:00:00:00:00:0,"}}},
		"comma in console":          {Kernel: "/k", Console: "/c,stdio"},
		"relative rest socket":      {Kernel: "/k", RESTSocket: "rest.sock"},
		"rest socket path too long": {Kernel: "/k", RESTSocket: "/" + strings.Repeat("d", 120) + "/rest.sock"},
	} {
		t.Run(name, func(t *testing.T) {
			if a, err := c.Args(); err == nil {
				t.Fatalf("no error: %q", a)
			}
		})
	}
}

func TestMAC(t *testing.T) {
	m := MAC("web-1")
	if m != MAC("web-1") || m == MAC("web-2") || !regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`).MatchString(m) {
		t.Fatalf("MAC %q", m)
	}
	for _, k := range []string{"a", "b", "c", "d", "web-1", "10.0.0.2"} {
		var b0 uint64
		for _, c := range MAC(k)[:2] {
			b0 = b0*16 + uint64(strings.IndexRune("0123456789abcdef", c))
		}
		if b0&1 != 0 || b0&2 == 0 {
			t.Fatalf("MAC(%q) = %s is not a locally administered unicast address", k, MAC(k))
		}
	}
	if err := checkMAC(m); err != nil {
		t.Fatal(err)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"512": 512, "1K": 1024, "16M": 16 << 20, "1G": 1 << 30, "2GiB": 2 << 30, "1T": 1 << 40, "64T": 64 << 40} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "-1G", "1X", "G", "65T", "99999999999999999999", "18446744073709551615K"} {
		if got, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, no error", s, got)
		}
	}
}

// serve answers HTTP on a unix socket in a short temporary folder.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "r.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestRESTStateAndStop(t *testing.T) {
	var posted string
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/vm/state":
			io.WriteString(w, `{"state":"VirtualMachineStateRunning","canStop":true,"canHardStop":true,"extra":1}`)
		case r.Method == http.MethodPost && r.URL.Path == "/vm/state":
			b, _ := io.ReadAll(r.Body)
			posted = string(b)
		default:
			http.NotFound(w, r)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := GetState(ctx, sock)
	if err != nil || st.State != "VirtualMachineStateRunning" || !st.CanStop || !st.CanHardStop {
		t.Fatalf("GetState = %+v, %v", st, err)
	}
	if err := SetState(ctx, sock, Stop); err != nil || posted != `{"state":"Stop"}` {
		t.Fatalf("SetState: %v, posted %q", err, posted)
	}
}

// TestRESTHugeReplyRefused: whatever listens on the socket may answer without end; the client
// reads at most MaxReply bytes and says so.
func TestRESTHugeReplyRefused(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"state":"`))
		chunk := []byte(strings.Repeat("x", 32<<10))
		for i := 0; i < 1<<15; i++ { // up to 1 GiB, unless the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := GetState(ctx, sock)
	if err == nil || !strings.Contains(err.Error(), "reply larger than") {
		t.Fatalf("GetState of an endless reply: %v", err)
	}
}

// TestRESTHugeHeadersRefused: the reply's headers are bounded too.
func TestRESTHugeHeadersRefused(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 64; i++ {
			w.Header().Add("X-Junk", strings.Repeat("j", 1<<10))
		}
		io.WriteString(w, `{"state":"VirtualMachineStateRunning"}`)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := GetState(ctx, sock); err == nil {
		t.Fatal("GetState accepted 64 KiB of headers")
	}
}

// TestRESTSilentServerTimesOut: a socket that accepts and never answers costs the caller its
// context's deadline, not forever.
func TestRESTSilentServerTimesOut(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "r.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = GetState(ctx, sock)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetState of a silent server: %v", err)
	}
}

func TestRESTBadReplies(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"not json": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") },
		"no state": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"canStop":true}`) },
		"long state": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"state":"`+strings.Repeat("s", 100)+`"}`)
		},
		"error": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusInternalServerError)
		},
	} {
		t.Run(name, func(t *testing.T) {
			sock := serve(t, h)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if st, err := GetState(ctx, sock); err == nil || !strings.Contains(err.Error(), sock) {
				t.Fatalf("GetState = %+v, %v (want an error naming the socket)", st, err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := SetState(ctx, filepath.Join(t.TempDir(), "none.sock"), Stop); err == nil {
		t.Fatal("SetState on a missing socket")
	}
}
