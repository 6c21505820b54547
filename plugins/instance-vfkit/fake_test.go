package instancevfkit

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The stand-in vfkit is this test binary, re-executed with fakeEnv set to a mode:
//
//	normal       serve the REST API; exit 0 on Stop or HardStop
//	ignore-stop  answer Stop with 200 and keep running (a guest that ignores power-off)
//	refuse-stop  answer Stop with 500 (vfkit's canStop false), exit on HardStop
//	endless      answer every request with an endless body
//	silent       accept REST connections and never answer
//
// It checks its command line as vfkit parses it (--cpus, --memory, --bootloader
// linux,kernel=,initrd=,cmdline="..." or efi,variable-store=,create, --device ...,
// --restful-uri unix://PATH), requires the files it is given to exist, records its arguments
// as argv.json next to the REST socket, writes a boot line to the console log, and appends
// "stop PID" / "hardstop PID" to $MOBYKIT_FAKE_VFKIT_EVENTS.
const fakeEnv = "MOBYKIT_FAKE_VFKIT"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		fakeVFKit(mode, os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

func fakeVFKit(mode string, args []string) {
	fail := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "fake vfkit: "+f+"\n", a...); os.Exit(1) }
	var boot, rest string
	var devices []string
	for i := 0; i < len(args); i++ {
		if i+1 >= len(args) {
			fail("option %s without a value", args[i])
		}
		switch args[i] {
		case "--cpus", "--memory":
		case "--bootloader":
			boot = args[i+1]
		case "--device":
			devices = append(devices, args[i+1])
		case "--restful-uri":
			rest = args[i+1]
		default:
			fail("unknown option %s", args[i])
		}
		i++
	}
	opts := func(s string) map[string]string {
		m := map[string]string{}
		for _, kv := range splitOptions(s) {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return m
	}
	exists := func(what, p string) {
		if _, err := os.Stat(p); err != nil {
			fail("%s: %v", what, err)
		}
	}
	var cmdline string
	switch b := opts(boot); {
	case strings.HasPrefix(boot, "linux,"):
		exists("kernel", b["kernel"])
		if b["initrd"] != "" {
			exists("initrd", b["initrd"])
		}
		cmdline = strings.Trim(b["cmdline"], `"`)
	case strings.HasPrefix(boot, "efi,"):
		if _, ok := b["create"]; !ok {
			exists("variable-store", b["variable-store"])
		}
		os.WriteFile(b["variable-store"], []byte("efi"), 0o644)
		cmdline = "(efi)"
	default:
		fail("want --bootloader linux,... or efi,..., got %q", boot)
	}
	var console string
	for _, d := range devices {
		o := opts(d)
		switch kind := splitOptions(d)[0]; kind {
		case "virtio-blk", "usb-mass-storage":
			exists(kind, o["path"])
		case "virtio-serial":
			console = o["logFilePath"]
		case "virtio-net", "virtio-rng":
		default:
			fail("unknown device %q", d)
		}
	}
	sock, ok := strings.CutPrefix(rest, "unix://")
	if !ok || console == "" {
		fail("want --restful-uri unix://PATH and a virtio-serial,logFilePath= device")
	}
	b, _ := json.Marshal(append([]string{"vfkit"}, args...))
	os.WriteFile(filepath.Join(filepath.Dir(sock), "argv.json"), b, 0o644)
	con, err := os.OpenFile(console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail("%v", err)
	}
	fmt.Fprintf(con, "fake kernel booting: %s\n", cmdline)
	l, err := net.Listen("unix", sock)
	if err != nil {
		fail("%v", err)
	}
	event := func(what string) {
		if ev := os.Getenv("MOBYKIT_FAKE_VFKIT_EVENTS"); ev != "" {
			f, _ := os.OpenFile(ev, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			fmt.Fprintf(f, "%s %d\n", what, os.Getpid())
			f.Close()
		}
	}
	exit := func() {
		fmt.Fprintln(con, "reboot: Power down")
		con.Close()
		l.Close()
		os.Exit(0)
	}
	switch mode {
	case "silent":
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	case "endless":
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := []byte(strings.Repeat("{", 32<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}))
		return
	}
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/vm/state" {
			http.NotFound(w, r)
			return
		}
		if r.Method == http.MethodGet {
			io.WriteString(w, `{"state":"VirtualMachineStateRunning","canStart":false,"canPause":true,"canResume":false,"canStop":true,"canHardStop":true}`)
			return
		}
		var req struct{ State string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch {
		case req.State == "Stop" && mode == "refuse-stop":
			event("stop-refused")
			http.Error(w, "cannot stop", http.StatusInternalServerError)
		case req.State == "Stop":
			event("stop")
			if mode == "ignore-stop" {
				return
			}
			go func() { time.Sleep(50 * time.Millisecond); exit() }()
		case req.State == "HardStop":
			event("hardstop")
			go func() { time.Sleep(10 * time.Millisecond); exit() }()
		default:
			http.Error(w, "bad state "+req.State, http.StatusBadRequest)
		}
	}))
}

// splitOptions splits vfkit's "a,b=c,d=\"x,y\"" at commas outside double quotes.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}
