package imds

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobykit/mobykit/metadata/config"
	"github.com/mobykit/mobykit/metadata/provider"
)

func rec(id string) Record {
	return Record{
		InstanceID:       id,
		Hostname:         id + ".local",
		LocalIPv4:        "10.0.0." + id[len(id)-1:],
		PublicIPv4:       "192.0.2." + id[len(id)-1:],
		AvailabilityZone: "eu-west-1b",
		PublicKeys:       []PublicKey{{Name: "laptop", Key: "ssh-ed25519 AAAA " + id}},
		Tags:             map[string]string{"Name": id, "role": "worker"},
		UserData:         []byte(`{"who":{"content":"` + id + `"}}`),
	}
}

type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (c client) do(method, path string, hdr map[string]string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	hc := c.hc
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c client) token(ttl string) string {
	c.t.Helper()
	code, tok := c.do(http.MethodPut, "/latest/api/token", map[string]string{headerTokenTTL: ttl})
	if code != 200 || tok == "" {
		c.t.Fatalf("PUT token: %d %q", code, tok)
	}
	return tok
}

func listen(t *testing.T, s *Server, id string) client {
	t.Helper()
	addr, err := s.ListenVM(id, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return client{t: t, base: "http://" + addr.String()}
}

func TestMetadataPaths(t *testing.T) {
	s := New()
	defer s.Close()
	if err := s.Register(rec("i-1")); err != nil {
		t.Fatal(err)
	}
	c := listen(t, s, "i-1")
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/latest/meta-data/instance-id", 200, "i-1"},
		{"/latest/meta-data/hostname", 200, "i-1.local"},
		{"/latest/meta-data/local-hostname", 200, "i-1.local"},
		{"/latest/meta-data/local-ipv4", 200, "10.0.0.1"},
		{"/latest/meta-data/public-ipv4", 200, "192.0.2.1"},
		{"/latest/meta-data/instance-type", 200, "mobykit.local"},
		{"/latest/meta-data/placement/availability-zone", 200, "eu-west-1b"},
		{"/latest/meta-data/placement/region", 200, "eu-west-1"},
		{"/latest/meta-data/public-keys/", 200, "0=laptop"},
		{"/latest/meta-data/public-keys/0/", 200, "openssh-key"},
		{"/latest/meta-data/public-keys/0/openssh-key", 200, "ssh-ed25519 AAAA i-1"},
		{"/latest/meta-data/tags/instance/", 200, "Name\nrole"},
		{"/latest/meta-data/tags/instance/role", 200, "worker"},
		{"/latest/meta-data/", 200, "ami-id\nhostname\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nplacement/\npublic-ipv4\npublic-keys/\ntags/"},
		{"/latest/meta-data/placement/", 200, "availability-zone\nregion"},
		{"/latest/user-data", 200, `{"who":{"content":"i-1"}}`},
		{"/latest/", 200, "dynamic\nmeta-data\nuser-data"},
		{"/latest/meta-data/nope", 404, ""},
		{"/latest/meta-data/tags/instance/nope", 404, ""},
		{"/other", 404, ""},
	} {
		code, body := c.do(http.MethodGet, tc.path, nil)
		if code != tc.code || (tc.code == 200 && body != tc.body) {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	if code, body := c.do(http.MethodGet, "/latest/dynamic/instance-identity/document", nil); code != 200 || !strings.Contains(body, `"region": "eu-west-1"`) {
		t.Errorf("identity document: %d %s", code, body)
	}
	if code, _ := c.do(http.MethodPost, "/latest/meta-data/instance-id", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("POST answered %d", code)
	}
	// A VM without userdata gets a 404, as on EC2.
	r := rec("i-2")
	r.UserData = nil
	s.Register(r)
	if code, _ := listen(t, s, "i-2").do(http.MethodGet, "/latest/user-data", nil); code != 404 {
		t.Errorf("no userdata: %d, want 404", code)
	}
}

func TestIMDSv2(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := New(WithTokenRequired(), WithClock(clock))
	defer s.Close()
	s.Register(rec("i-1"))
	s.Register(rec("i-2"))
	a, b := listen(t, s, "i-1"), listen(t, s, "i-2")

	if code, _ := a.do(http.MethodGet, "/latest/meta-data/instance-id", nil); code != 401 {
		t.Errorf("token-less GET with tokens required: %d, want 401", code)
	}
	for _, ttl := range []string{"", "0", "21601", "abc"} {
		if code, _ := a.do(http.MethodPut, "/latest/api/token", map[string]string{headerTokenTTL: ttl}); code != 400 {
			t.Errorf("PUT token ttl %q: %d, want 400", ttl, code)
		}
	}
	if code, _ := a.do(http.MethodGet, "/latest/api/token", nil); code != 405 {
		t.Errorf("GET token: %d, want 405", code)
	}
	if code, _ := a.do(http.MethodPut, "/latest/api/token", map[string]string{headerTokenTTL: "60", "X-Forwarded-For": "1.2.3.4"}); code != 403 {
		t.Errorf("proxied PUT token: %d, want 403", code)
	}
	tok := a.token("60")
	if code, body := a.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: tok}); code != 200 || body != "i-1" {
		t.Errorf("GET with token: %d %q", code, body)
	}
	if code, _ := a.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: "forged"}); code != 401 {
		t.Errorf("forged token: %d, want 401", code)
	}
	// A token is bound to its VM.
	if code, _ := b.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: tok}); code != 401 {
		t.Errorf("i-1's token on i-2: %d, want 401", code)
	}
	// And expires after its TTL.
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	if code, _ := a.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: tok}); code != 401 {
		t.Errorf("expired token: %d, want 401", code)
	}
	// Unregistering revokes tokens and closes the VM's listener.
	tok2 := b.token("600")
	if err := s.Unregister("i-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(b.base + "/latest/meta-data/instance-id"); err == nil {
		t.Error("i-2's listener still answers after Unregister")
	}
	if err := s.Unregister("i-2"); err == nil {
		t.Error("double Unregister accepted")
	}
	// A VM registered again under the same ID does not accept its predecessor's tokens.
	s.Register(rec("i-2"))
	if s.validToken("i-2", tok2) {
		t.Error("i-2's token survived Unregister")
	}
}

func TestIMDSv1AllowedByDefault(t *testing.T) {
	s := New()
	defer s.Close()
	s.Register(rec("i-1"))
	c := listen(t, s, "i-1")
	if code, body := c.do(http.MethodGet, "/latest/meta-data/instance-id", nil); code != 200 || body != "i-1" {
		t.Errorf("v1 GET: %d %q", code, body)
	}
	// A bad token is still refused even when v1 is allowed (as on EC2).
	if code, _ := c.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: "bad"}); code != 401 {
		t.Errorf("bad token in optional mode: %d, want 401", code)
	}
}

// TestSeparationBySourceAddress: one listener, VMs told apart by the address they come from
// (127.0.0.2 and 127.0.0.3 stand in for two VMs on a bridge).
func TestSeparationBySourceAddress(t *testing.T) {
	s := New(WithTokenRequired())
	a, b := rec("i-a"), rec("i-b")
	a.Addr, b.Addr = netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	if err := s.Register(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(b); err != nil {
		t.Fatal(err)
	}
	clash := rec("i-c")
	clash.Addr = a.Addr
	if err := s.Register(clash); err == nil {
		t.Error("two instances registered on one address")
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	from := func(src string) client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return client{t: t, base: srv.URL, hc: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}}
	}
	for _, tc := range []struct{ src, id string }{{"127.0.0.2", "i-a"}, {"127.0.0.3", "i-b"}} {
		c := from(tc.src)
		tok := c.token("60")
		if code, body := c.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: tok}); code != 200 || body != tc.id {
			t.Errorf("from %s: %d %q, want %s", tc.src, code, body, tc.id)
		}
		if _, body := c.do(http.MethodGet, "/latest/user-data", map[string]string{headerToken: tok}); !strings.Contains(body, tc.id) {
			t.Errorf("from %s: userdata %q is not %s's", tc.src, body, tc.id)
		}
	}
	// Another VM's token from the wrong address is refused.
	tokA := from("127.0.0.2").token("60")
	if code, _ := from("127.0.0.3").do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: tokA}); code != 401 {
		t.Errorf("i-a's token from i-b's address: %d, want 401", code)
	}
	if code, _ := from("127.0.0.9").do(http.MethodGet, "/latest/meta-data/instance-id", nil); code != 404 {
		t.Errorf("unregistered address: %d, want 404", code)
	}
}

// TestAWSProviderAgainstServer: the agent's AWS provider, unchanged, gets each VM its own data
// from the local server with IMDSv2 enforced: the same code path as on EC2.
func TestAWSProviderAgainstServer(t *testing.T) {
	s := New(WithTokenRequired())
	defer s.Close()
	for _, id := range []string{"i-1", "i-2"} {
		s.Register(rec(id))
	}
	for _, id := range []string{"i-1", "i-2"} {
		c := listen(t, s, id)
		cfg := provider.DefaultConfig()
		cfg.Endpoints.AWS = c.base
		root := filepath.Join(t.TempDir(), "config")
		dir, err := config.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		res, err := provider.Run(context.Background(), provider.Set{Network: []provider.Provider{provider.NewAWS(cfg)}}, dir, provider.Options{})
		dir.Close()
		if err != nil || res.Provider != "AWS" {
			t.Fatalf("%s: Run = %+v, %v", id, res, err)
		}
		for file, want := range map[string]string{
			"instance_id": id, "hostname": id + ".local", "local_ipv4": rec(id).LocalIPv4, "public_ipv4": rec(id).PublicIPv4,
			"availability_zone": "eu-west-1b", "ssh/authorized_keys": "ssh-ed25519 AAAA " + id, "who": id,
		} {
			b, err := os.ReadFile(filepath.Join(root, file))
			if err != nil || string(b) != want {
				t.Errorf("%s: %s = %q (%v), want %q", id, file, b, err, want)
			}
		}
	}
}

// TestRelay: the per-connection relay QEMU's guestfwd runs carries an HTTP exchange.
func TestRelay(t *testing.T) {
	s := New()
	defer s.Close()
	s.Register(rec("i-1"))
	addr, err := s.ListenVM("i-1", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := strings.NewReader("GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
	var out bytes.Buffer
	if err := Relay(context.Background(), addr.String(), in, &out); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(&out), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "i-1" {
		t.Fatalf("relayed answer %d %q", resp.StatusCode, body)
	}
	if err := Relay(context.Background(), "127.0.0.1:1", strings.NewReader(""), io.Discard); err == nil {
		t.Error("relay to a closed port succeeded")
	}
}

func TestQEMUUserNetdev(t *testing.T) {
	got, err := QEMUUserNetdev("net0", []string{"/usr/bin/mobykit", "metadata", "connect", "127.0.0.1:4567"}, "hostfwd=tcp:127.0.0.1:2222-:22")
	if err != nil {
		t.Fatal(err)
	}
	want := "user,id=net0,net=169.254.169.0/24,host=169.254.169.2,dns=169.254.169.3,dhcpstart=169.254.169.15," +
		"guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/mobykit metadata connect 127.0.0.1:4567,hostfwd=tcp:127.0.0.1:2222-:22"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{"/path with space/mobykit", "/a,b", "/a'b", `/a"b`, "/a$(id)", "/a;b", `/a\b`, "/a\tb", ""} {
		if _, err := QEMUUserNetdev("n", []string{bad}); err == nil {
			t.Errorf("relay argument %q was accepted", bad)
		}
	}
}
