package instanceqemu

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/metadata/imds"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
)

// relayArg, as the test binary's first argument, makes it QEMU's per-connection guestfwd relay
// (what `mobykit metadata connect TARGET` does), so the tests need no mobykit binary.
const relayArg = "mobykit-test-imds-relay"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == relayArg {
		// stdin, stdout and stderr are all the guest's connection: report nothing on them.
		if err := imds.Relay(context.Background(), os.Args[2], os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testRelay(t *testing.T) func(string) []string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(target string) []string { return []string{self, relayArg, target} }
}

// probeInit is a guest on the metadata user network that reads its own userdata from
// 169.254.169.254, then tries every host address it is given (test.targets=HOST:PORT,...),
// printing whatever answers, and serves "PUBLISHED-<ID>" on port 80.
const probeInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys
for m in %s; do insmod $m; done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
ip link set lo up; ip link set eth0 up; ip addr add 169.254.169.15/24 dev eth0
ip route add default via 169.254.169.2
mkdir -p /www; echo "PUBLISHED-$(arg mobykit.instance)" > /www/index.html; httpd -p 80 -h /www
get() { timeout 5 wget -q -O - "$1" 2>/dev/null | head -c 300 | tr '\n' ' '; }
echo "OWN=$(get http://169.254.169.254/latest/user-data)"
for t in $(arg test.targets | tr ',' ' '); do
  echo "TRY $t: [$(get http://$t/latest/user-data)] [$(get http://$t/)]"
done
echo PROBES-DONE
while :; do sleep 10; done
`

// ownTCPListeners returns the addresses of the TCP sockets this process listens on.
func ownTCPListeners(t *testing.T) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "0A" || !inodes[fl[9]] { // 0A: LISTEN
				continue
			}
			host, port, _ := strings.Cut(fl[1], ":")
			b, _ := hex.DecodeString(host)
			ip := make(net.IP, len(b))
			for i := 0; i+4 <= len(b); i += 4 { // each 32-bit word is in host (little-endian) order
				ip[i], ip[i+1], ip[i+2], ip[i+3] = b[i+3], b[i+2], b[i+1], b[i]
			}
			if ip.IsUnspecified() {
				ip = net.IPv4(127, 0, 0, 1)
			}
			pn, _ := strconv.ParseUint(port, 16, 16)
			addrs = append(addrs, net.JoinHostPort(ip.String(), fmt.Sprint(pn)))
		}
		f.Close()
	}
	return addrs
}

func httpGet(addr, path string) string {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return string(b)
}

// TestGuestCannotReadAnotherVMsMetadata boots two VMs, A and B, with the plugin's metadata
// server and different userdata. From inside A, every host address a guest could use to reach
// B's metadata, B's published port or anything on the host's loopback (the user network's
// gateway 169.254.169.2, which QEMU maps to the host's 127.0.0.1, and 10.0.2.2) gives nothing,
// while 169.254.169.254 gives A its own userdata. From the host, B's metadata is on a 0600
// unix socket, and no TCP listener of the plugin serves it to a local user.
func TestGuestCannotReadAnotherVMsMetadata(t *testing.T) {
	testenv.RequireQEMU(t)
	kernel, initrd := buildGuestWith(t, probeInit)
	root, err := os.MkdirTemp("", "iq") // short: socket paths must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	ctx := context.Background()
	p, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.IMDSRelay = testRelay(t)
	t.Cleanup(func() {
		ds, _ := p.DescribeInstances(ctx, nil, false)
		for _, d := range ds {
			p.Destroy(ctx, d.ID, spi.Context{Reason: spi.ReasonTerminate})
		}
		p.Close()
	})

	// Something secret on the host's loopback, as a local service would be.
	const hostSecret = "HOST-LOOPBACK-SECRET"
	sentinel, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(sentinel, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, hostSecret) }))
	t.Cleanup(func() { sentinel.Close() })

	secretA := fmt.Sprintf("SECRET-A-%d", os.Getpid())
	secretB := fmt.Sprintf("SECRET-B-%d", os.Getpid())
	props := func(targets []string) spi.Any {
		cmdline := "console=ttyS0 quiet"
		if len(targets) > 0 {
			cmdline += " test.targets=" + strings.Join(targets, ",")
		}
		b, _ := json.Marshal(map[string]any{
			"kernel": kernel, "initrd": initrd, "cmdline": cmdline, "memory": 256,
			"metadata": "imds", "publish": []string{"0:80"}, "shutdown_timeout": "1s",
		})
		return b
	}
	type described struct {
		Ports   map[string]string
		IMDS    string
		Console string
	}
	describe := func(id spi.ID) described {
		ds, err := p.DescribeInstances(ctx, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.ID == id {
				var pr described
				json.Unmarshal(d.Properties, &pr)
				return pr
			}
		}
		t.Fatalf("%s not listed", id)
		return described{}
	}

	// B first: up, serving on its published port, its metadata in place.
	idB, err := p.Provision(ctx, spi.Spec{Properties: props(nil), Init: secretB})
	if err != nil {
		t.Fatal(err)
	}
	b := describe(*idB)
	waitConsole(t, b.Console, "PROBES-DONE", 3*time.Minute)
	waitConsole(t, b.Console, "OWN="+secretB, time.Second)
	published := b.Ports["80/tcp"]
	if got := httpGet(published, "/"); !strings.Contains(got, "PUBLISHED-"+string(*idB)) {
		t.Fatalf("B's published port %s answered %q", published, got)
	}

	// From the host: B's metadata is on a 0600 socket only, and no TCP listener of this
	// process (the plugin's) hands B's userdata to a local user.
	if fi, err := os.Lstat(b.IMDS); err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("B's metadata listener %q: %v %v, want a unix socket with mode 0600", b.IMDS, fi, err)
	}
	var hostPorts []string
	seen := map[string]bool{}
	for _, addr := range append(ownTCPListeners(t), published, sentinel.Addr().String()) {
		if seen[addr] {
			continue
		}
		seen[addr] = true
		if got := httpGet(addr, "/latest/user-data"); strings.Contains(got, secretB) {
			t.Errorf("a local user reads B's userdata from the TCP listener %s", addr)
		}
		if _, port, err := net.SplitHostPort(addr); err == nil {
			hostPorts = append(hostPorts, port)
		}
	}
	if _, port, err := net.SplitHostPort(b.IMDS); err == nil { // a TCP metadata listener
		hostPorts = append(hostPorts, port)
	}

	// A tries them all from inside, through the user network's gateway and 10.0.2.2.
	var targets []string
	for _, port := range hostPorts {
		targets = append(targets, imds.UserHost+":"+port, "10.0.2.2:"+port)
	}
	targets = append(targets, imds.MetadataAddr+":8080", imds.UserDNS+":80")
	idA, err := p.Provision(ctx, spi.Spec{Properties: props(targets), Init: secretA})
	if err != nil {
		t.Fatal(err)
	}
	a := describe(*idA)
	waitConsole(t, a.Console, "PROBES-DONE", 5*time.Minute)
	con, _ := os.ReadFile(a.Console)
	t.Logf("A's probes:\n%s", grepLines(string(con), "OWN=", "TRY "))
	if !strings.Contains(string(con), "OWN="+secretA) {
		t.Errorf("A did not get its own userdata from %s", imds.MetadataAddr)
	}
	for _, leak := range []string{secretB, hostSecret, "PUBLISHED-" + string(*idB)} {
		if strings.Contains(string(con), leak) {
			t.Errorf("guest A reached %q", leak)
		}
	}
	if got := httpGet(published, "/"); !strings.Contains(got, "PUBLISHED-"+string(*idB)) {
		t.Errorf("B's published port stopped working: %q", got)
	}
}

func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(strings.TrimSpace(l), p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestAdoptRefusesHostileIMDSRecord: a restarted plugin serves a running VM's metadata again
// only on the VM's own socket in its own state folder, and only the record of that VM; a state
// folder naming another place (a path outside the root, a TCP port as older plugins used) or
// another VM's instance ID is refused, and nothing is created or served for it.
func TestAdoptRefusesHostileIMDSRecord(t *testing.T) {
	root, err := os.MkdirTemp("", "iq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	_, store, err := vm.OpenPluginState(root)
	if err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	freeAddr := free.Addr().String()
	free.Close()
	cases := map[string]struct{ listener, recID string }{
		"qemu-good":    {"", "qemu-good"},
		"qemu-outside": {filepath.Join(outside, "imds.sock"), "qemu-outside"},
		"qemu-escape":  {filepath.Join(store.Root, "qemu-escape", "..", "..", "x.sock"), "qemu-escape"},
		"qemu-tcp":     {freeAddr, "qemu-tcp"},
		"qemu-thief":   {"", "qemu-victim"},
	}
	for id, c := range cases {
		dir, err := store.Create(id)
		if err != nil {
			t.Fatal(err)
		}
		listener := c.listener
		if listener == "" {
			listener = dir.Path(imdsSocket)
		}
		proc, cmd, err := vm.Start(vm.StartOptions{Argv: []string{"sh", "-c", "sleep 60; :", string(dir)}, Marker: string(dir)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }) // its session: sh and sleep
		dir.WriteJSON(vm.ProcessFile, proc)
		dir.WriteJSON(vm.LaunchFile, launchProps{IMDS: listener})
		dir.WriteJSON(imdsFile, imds.Record{InstanceID: c.recID, UserData: []byte("data of " + id)})
	}
	p, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, ok := p.imds.Lookup("qemu-good"); !ok {
		t.Error("the well-formed VM's metadata is not served again")
	}
	good := filepath.Join(store.Root, "qemu-good", imdsSocket)
	if fi, err := os.Lstat(good); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("adopted socket %s: %v %v", good, fi, err)
	}
	for _, id := range []string{"qemu-outside", "qemu-escape", "qemu-tcp", "qemu-thief", "qemu-victim"} {
		if _, ok := p.imds.Lookup(id); ok {
			t.Errorf("%s: a record was served from a hostile state folder", id)
		}
	}
	for _, path := range []string{filepath.Join(outside, "imds.sock"), filepath.Join(root, "x.sock")} {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("a socket was made at %s, outside the instance's state folder", path)
		}
	}
	if c, err := net.DialTimeout("tcp", freeAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("an old-style TCP metadata listener was opened on %s", freeAddr)
	}
}
