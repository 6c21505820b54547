package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mobykit/mobykit/metadata/config"
)

// cloud is a fake metadata service: a map of exact paths to values, a check run on every
// request (headers, methods), and a log of what was asked.
type cloud struct {
	t      *testing.T
	values map[string]string
	check  func(r *http.Request) int // non-zero: answer with that status
	delay  time.Duration
	mu     sync.Mutex
	asked  []string
}

func (c *cloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.asked = append(c.asked, r.Method+" "+r.URL.Path)
	c.mu.Unlock()
	if c.delay > 0 {
		select {
		case <-time.After(c.delay):
		case <-r.Context().Done():
			return
		}
	}
	if c.check != nil {
		if code := c.check(r); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	v, ok := c.values[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	fmt.Fprint(w, v)
}

func serve(t *testing.T, c *cloud) string {
	c.t = t
	s := httptest.NewServer(c)
	t.Cleanup(s.Close)
	return s.URL
}

// testConfig points every endpoint at base and disables device probing.
func testConfig(base string) Config {
	return Config{
		Endpoints: Endpoints{AWS: base, GCP: base, OpenStack: base, Hetzner: base, DigitalOcean: base,
			Vultr: base, Scaleway: base, Packet: base, EquinixMetal: base},
		Timeout: 500 * time.Millisecond,
	}
}

func openDir(t *testing.T) (*config.Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "config")
	d, err := config.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, root
}

// runSet runs the providers of set into a fresh config folder, fails t unless the provider
// named want answered, and returns the folder.
func runSet(t *testing.T, set Set, want string) string {
	t.Helper()
	dir, root := openDir(t)
	res, err := Run(context.Background(), set, dir, Options{})
	if err != nil || res.Provider != want {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	return root
}

func checkFiles(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for rel, content := range want {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if string(b) != content {
			t.Errorf("%s = %q, want %q", rel, b, content)
		}
	}
	if _, ok := want["ssh/authorized_keys"]; ok {
		st, err := os.Stat(filepath.Join(root, "ssh/authorized_keys"))
		if err == nil && st.Mode().Perm() != 0o600 {
			t.Errorf("ssh/authorized_keys mode %v, want 0600", st.Mode().Perm())
		}
	}
}

// ec2Values is what an EC2-compatible service answers under /latest/.
func ec2Values() map[string]string {
	return map[string]string{
		"/latest/meta-data/hostname":                    "ip-10-0-0-5.ec2.internal",
		"/latest/meta-data/public-ipv4":                 "203.0.113.5",
		"/latest/meta-data/local-ipv4":                  "10.0.0.5",
		"/latest/meta-data/placement/availability-zone": "us-east-1a",
		"/latest/meta-data/instance-type":               "t3.micro",
		"/latest/meta-data/instance-id":                 "i-0123456789abcdef0",
		"/latest/meta-data/local-hostname":              "ip-10-0-0-5",
		"/latest/meta-data/public-keys/0/openssh-key":   "ssh-ed25519 AAAA key0",
		"/latest/user-data":                             `{"app":{"entries":{"role":{"content":"leader"}}}}`,
	}
}

var ec2Want = map[string]string{
	"hostname":            "ip-10-0-0-5.ec2.internal",
	"public_ipv4":         "203.0.113.5",
	"local_ipv4":          "10.0.0.5",
	"availability_zone":   "us-east-1a",
	"instance_type":       "t3.micro",
	"instance_id":         "i-0123456789abcdef0",
	"local_hostname":      "ip-10-0-0-5",
	"ssh/authorized_keys": "ssh-ed25519 AAAA key0",
}

// imdsv2 returns a check enforcing IMDSv2: PUT /latest/api/token with a TTL header gives a
// token; every GET must carry a valid one. expireAfter > 0 revokes a token after that many GETs.
func imdsv2(expireAfter int) (func(r *http.Request) int, http.HandlerFunc, *atomic.Int32) {
	var mu sync.Mutex
	valid := map[string]int{}
	var n atomic.Int32
	put := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		tok := fmt.Sprintf("token-%d", n.Add(1))
		valid[tok] = 0
		mu.Unlock()
		fmt.Fprint(w, tok)
	}
	check := func(r *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		uses, ok := valid[r.Header.Get("X-aws-ec2-metadata-token")]
		if !ok {
			return http.StatusUnauthorized
		}
		valid[r.Header.Get("X-aws-ec2-metadata-token")] = uses + 1
		if expireAfter > 0 && uses+1 >= expireAfter {
			delete(valid, r.Header.Get("X-aws-ec2-metadata-token"))
		}
		return 0
	}
	return check, put, &n
}

func TestAWS(t *testing.T) {
	t.Run("IMDSv2 token on every request", func(t *testing.T) {
		check, put, tokens := imdsv2(0)
		c := &cloud{values: ec2Values(), check: check}
		mux := http.NewServeMux()
		mux.HandleFunc("PUT /latest/api/token", put)
		mux.Handle("/", c)
		s := httptest.NewServer(mux)
		defer s.Close()
		p := NewAWS(testConfig(s.URL))
		if err := p.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
		dir, root := openDir(t)
		ud, err := p.Extract(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		if string(ud) != ec2Values()["/latest/user-data"] {
			t.Errorf("userdata %q", ud)
		}
		checkFiles(t, root, ec2Want)
		if tokens.Load() != 1 {
			t.Errorf("asked for %d tokens, want 1", tokens.Load())
		}
	})
	t.Run("token expires mid-way and is renewed", func(t *testing.T) {
		check, put, tokens := imdsv2(3)
		mux := http.NewServeMux()
		mux.HandleFunc("PUT /latest/api/token", put)
		mux.Handle("/", &cloud{values: ec2Values(), check: check})
		s := httptest.NewServer(mux)
		defer s.Close()
		root := runSet(t, Set{Network: []Provider{NewAWS(testConfig(s.URL))}}, "AWS")
		checkFiles(t, root, ec2Want)
		checkFiles(t, root, map[string]string{"app/role": "leader", "provider": "AWS"})
		if tokens.Load() < 2 {
			t.Errorf("token was not renewed (%d tokens)", tokens.Load())
		}
	})
	// A local VM's first metadata connection starts a relay process on the host; on a loaded
	// host the first token PUT can outlast one attempt's timeout. Seen in metadata/e2e.
	t.Run("token PUT retried after a slow relay", func(t *testing.T) {
		check, put, tokens := imdsv2(0)
		var puts atomic.Int32
		mux := http.NewServeMux()
		mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
			if puts.Add(1) == 1 {
				select { // slower than the client's timeout, once
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
				}
				return
			}
			put(w, r)
		})
		mux.Handle("/", &cloud{values: ec2Values(), check: check})
		s := httptest.NewServer(mux)
		defer s.Close()
		cfg := testConfig(s.URL)
		cfg.Timeout = 300 * time.Millisecond
		if err := NewAWS(cfg).Probe(context.Background()); err != nil {
			t.Fatalf("probe after one slow token PUT: %v", err)
		}
		if puts.Load() != 2 || tokens.Load() != 1 {
			t.Errorf("%d token PUTs, %d tokens issued; want 2 PUTs, 1 token", puts.Load(), tokens.Load())
		}
	})
	t.Run("token PUT not retried forever", func(t *testing.T) {
		var puts atomic.Int32
		mux := http.NewServeMux()
		mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
			puts.Add(1)
			<-r.Context().Done()
		})
		s := httptest.NewServer(mux)
		defer s.Close()
		cfg := testConfig(s.URL)
		cfg.Timeout = 100 * time.Millisecond
		if err := NewAWS(cfg).Probe(context.Background()); err == nil {
			t.Fatal("probe of a service that never answers succeeded")
		}
		if puts.Load() != awsTokenAttempts {
			t.Errorf("%d token PUTs, want %d", puts.Load(), awsTokenAttempts)
		}
	})
	t.Run("IMDSv1 fallback when the token PUT is refused", func(t *testing.T) {
		c := &cloud{values: ec2Values(), check: func(r *http.Request) int {
			if r.Method == http.MethodPut {
				return http.StatusForbidden
			}
			if r.Header.Get("X-aws-ec2-metadata-token") != "" {
				return http.StatusBadRequest
			}
			return 0
		}}
		p := NewAWS(testConfig(serve(t, c)))
		if err := p.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
		dir, root := openDir(t)
		if _, err := p.Extract(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		checkFiles(t, root, ec2Want)
		if c.asked[0] != "PUT /latest/api/token" {
			t.Errorf("first request %q, want the token PUT", c.asked[0])
		}
	})
	t.Run("no user-data is not an error", func(t *testing.T) {
		v := ec2Values()
		delete(v, "/latest/user-data")
		c := &cloud{values: v, check: func(r *http.Request) int {
			if r.Method == http.MethodPut {
				return http.StatusNotFound
			}
			return 0
		}}
		p := NewAWS(testConfig(serve(t, c)))
		dir, _ := openDir(t)
		ud, err := p.Extract(context.Background(), dir)
		if err != nil || ud != nil {
			t.Fatalf("Extract = %q, %v; want nil, nil", ud, err)
		}
	})
}

func TestGCP(t *testing.T) {
	c := &cloud{
		values: map[string]string{
			"/computeMetadata/v1/instance/hostname":             "vm1.c.project.internal",
			"/computeMetadata/v1/project/attributes/ssh-keys":   "alice:ssh-rsa AAAA alice\nbob:ssh-ed25519 BBBB bob\nnot-a-key-line",
			"/computeMetadata/v1/instance/attributes/user-data": "#cloud-config\n",
		},
		check: func(r *http.Request) int {
			if r.Header.Get("Metadata-Flavor") != "Google" {
				return http.StatusForbidden
			}
			return 0
		},
	}
	p := NewGCP(testConfig(serve(t, c)))
	if err := p.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir, root := openDir(t)
	ud, err := p.Extract(context.Background(), dir)
	if err != nil || string(ud) != "#cloud-config\n" {
		t.Fatalf("Extract = %q, %v", ud, err)
	}
	checkFiles(t, root, map[string]string{
		"hostname":            "vm1.c.project.internal",
		"ssh/authorized_keys": "ssh-rsa AAAA alice\nssh-ed25519 BBBB bob\n",
	})
	// Without the header the service refuses: the provider must send it.
	resp, err := http.Get(p.base + "/computeMetadata/v1/instance/hostname")
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("fake GCP accepted a request without Metadata-Flavor")
	}
}

func TestOpenStack(t *testing.T) {
	c := &cloud{values: ec2Values()}
	p := NewOpenStack(testConfig(serve(t, c)))
	if err := p.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir, root := openDir(t)
	if _, err := p.Extract(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, root, ec2Want)
	if p.String() != "openstack" {
		t.Errorf("name %q", p)
	}
}

func TestHetzner(t *testing.T) {
	c := &cloud{values: map[string]string{
		"/latest/meta-data/hostname":    "hetzner-1",
		"/latest/meta-data/public-ipv4": "198.51.100.7",
		"/latest/meta-data/local-ipv4":  "10.1.0.2",
		"/latest/meta-data/instance-id": "4711",
		"/latest/meta-data/public-keys": `["ssh-ed25519 AAAA one","ssh-rsa BBBB two"]`,
		"/latest/user-data":             "hello",
	}}
	p := NewHetzner(testConfig(serve(t, c)))
	root := runSet(t, Set{Network: []Provider{p}}, "Hetzner")
	checkFiles(t, root, map[string]string{
		"hostname": "hetzner-1", "public_ipv4": "198.51.100.7", "local_ipv4": "10.1.0.2", "instance_id": "4711",
		"ssh/authorized_keys": "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n", "userdata": "hello",
	})
}

func TestDigitalOcean(t *testing.T) {
	c := &cloud{values: map[string]string{
		"/metadata/v1/":         "id\nhostname\nuser-data\n",
		"/metadata/v1/hostname": "droplet-1",
		"/metadata/v1/interfaces/public/0/ipv4/address":  "192.0.2.10",
		"/metadata/v1/interfaces/private/0/ipv4/address": "10.130.0.2",
		"/metadata/v1/region":                            "ams3",
		"/metadata/v1/id":                                "2756294",
		"/metadata/v1/public-keys":                       "ssh-rsa DO key",
		"/metadata/v1/user-data":                         "do-userdata",
	}}
	p := NewDigitalOcean(testConfig(serve(t, c)))
	root := runSet(t, Set{Network: []Provider{p}}, "DigitalOcean")
	checkFiles(t, root, map[string]string{
		"hostname": "droplet-1", "public_ipv4": "192.0.2.10", "private_ipv4": "10.130.0.2", "region": "ams3",
		"id": "2756294", "ssh/authorized_keys": "ssh-rsa DO key", "userdata": "do-userdata",
	})
}

func TestVultr(t *testing.T) {
	c := &cloud{values: map[string]string{
		"/v1/":                          "hostname\ninstanceid\n",
		"/v1/hostname":                  "vultr-guest",
		"/v1/interfaces/0/ipv4/address": "192.0.2.2",
		"/v1/interfaces/1/ipv4/address": "10.99.0.10",
		"/v1/interfaces/1/ipv4/netmask": "255.255.0.0",
		"/v1/region/regioncode":         "EWR",
		"/v1/instanceid":                "a747bfz6385e",
		"/v1/public-keys":               "ssh-rsa VULTR",
		"/latest/user-data":             "vultr-userdata",
	}}
	p := NewVultr(testConfig(serve(t, c)))
	root := runSet(t, Set{Network: []Provider{p}}, "Vultr")
	checkFiles(t, root, map[string]string{
		"hostname": "vultr-guest", "public_ipv4": "192.0.2.2", "private_ipv4": "10.99.0.10", "private_netmask": "255.255.0.0",
		"region_code": "EWR", "instance_id": "a747bfz6385e", "ssh/authorized_keys": "ssh-rsa VULTR", "userdata": "vultr-userdata",
	})
}

func TestScaleway(t *testing.T) {
	var userdataPort atomic.Int32
	c := &cloud{
		values: map[string]string{
			"/conf": "ID=11111111-2222\nHOSTNAME=scw-node\nLOCATION_ZONE_ID=fr-par-1\nPUBLIC_IP_ADDRESS=51.15.0.1\nPRIVATE_IP=10.64.0.3\n" +
				"SSH_PUBLIC_KEYS=2\nSSH_PUBLIC_KEYS_0_KEY='ssh-ed25519 AAAA first'\nSSH_PUBLIC_KEYS_1_KEY='ssh-rsa BBBB second'\n",
			"/user_data/cloud-init": "scw-userdata",
		},
		check: func(r *http.Request) int {
			if r.URL.Path == "/user_data/cloud-init" {
				_, port, _ := net.SplitHostPort(r.RemoteAddr)
				var n int
				fmt.Sscan(port, &n)
				userdataPort.Store(int32(n))
				if n >= 1024 {
					return http.StatusForbidden // Scaleway only serves userdata to privileged ports
				}
			}
			return 0
		},
	}
	p := NewScaleway(testConfig(serve(t, c)))
	root := runSet(t, Set{Network: []Provider{p}}, "Scaleway")
	want := map[string]string{
		"hostname": "scw-node", "instance_id": "11111111-2222", "instance_location": "fr-par-1", "public_ip": "51.15.0.1",
		"private_ip": "10.64.0.3", "ssh/authorized_keys": "ssh-ed25519 AAAA first\nssh-rsa BBBB second\n",
	}
	if os.Geteuid() == 0 {
		want["userdata"] = "scw-userdata"
	} else {
		t.Log("not root: cannot bind a privileged port, userdata fetch not checked")
	}
	checkFiles(t, root, want)
	if os.Geteuid() == 0 && (userdataPort.Load() == 0 || userdataPort.Load() >= 1024) {
		t.Errorf("userdata fetched from port %d, want < 1024", userdataPort.Load())
	}
}

func TestEquinixMetal(t *testing.T) {
	for _, tc := range []struct {
		name, userdata string
		wantUserdata   bool
	}{{"plain", "#!/bin/sh\necho hi", true}, {"ipxe script is not userdata", "#!ipxe\nchain http://x", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cloud{values: map[string]string{
				"/metadata": `{"id":"dev-1","hostname":"metal-1","facility":"ny5","plan":"c3.small.x86","ssh_keys":["ssh-rsa K1","ssh-rsa K2"]}`,
				"/userdata": tc.userdata,
			}}
			cfg := testConfig(serve(t, c))
			for _, p := range []*EquinixMetal{NewPacket(cfg), NewEquinixMetal(cfg)} {
				root := runSet(t, Set{Network: []Provider{p}}, p.String())
				checkFiles(t, root, map[string]string{"hostname": "metal-1", "instance_id": "dev-1", "ssh/authorized_keys": "ssh-rsa K1\nssh-rsa K2"})
				if _, err := os.Stat(filepath.Join(root, "userdata")); (err == nil) != tc.wantUserdata {
					t.Errorf("userdata present = %v, want %v", err == nil, tc.wantUserdata)
				}
			}
		})
	}
}

func TestFileProvider(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ud")
	os.WriteFile(p, []byte(`{"f":{"content":"x"}}`), 0o644)
	set, err := Parse([]string{"file=" + p}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	root := runSet(t, set, p)
	checkFiles(t, root, map[string]string{"f": "x", "provider": p})
}

// TestSlowAndFailing: services that hang or fail are given up on within the timeout, the run
// reports why each failed, and does not hang.
func TestSlowAndFailing(t *testing.T) {
	slow := serve(t, &cloud{values: ec2Values(), delay: 10 * time.Second})
	failing := serve(t, &cloud{values: ec2Values(), check: func(*http.Request) int { return http.StatusInternalServerError }})
	closed := func() string { s := httptest.NewServer(http.NotFoundHandler()); u := s.URL; s.Close(); return u }()

	for _, tc := range []struct{ name, base, wantErr string }{
		{"slow", slow, "Timeout"},
		{"failing", failing, "status 500"},
		{"nothing listening", closed, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.base)
			cfg.Timeout = 300 * time.Millisecond
			set, err := Parse([]string{"aws", "gcp", "hetzner", "openstack", "scaleway", "vultr", "digitalocean", "packet", "equinixmetal"}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			dir, root := openDir(t)
			start := time.Now()
			_, err = Run(context.Background(), set, dir, Options{})
			elapsed := time.Since(start)
			if !errors.Is(err, ErrNoProvider) {
				t.Fatalf("Run error %v, want ErrNoProvider", err)
			}
			for _, name := range []string{"AWS", "GCP", "Hetzner", "openstack", "Scaleway", "Vultr", "DigitalOcean", "Packet", "EquinixMetal"} {
				if !strings.Contains(err.Error(), name+":") {
					t.Errorf("error does not say why %s failed: %v", name, err)
				}
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v does not mention %q", err, tc.wantErr)
			}
			// All probes run at once; AWS may spend two timeouts (token, then hostname).
			if elapsed > 5*cfg.Timeout {
				t.Errorf("Run took %v with a %v timeout", elapsed, cfg.Timeout)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("files written although nothing was found: %v", entries)
			}
		})
	}
}

// TestProbeOrder: the first provider in list order that answers wins, even if a later one
// answers sooner; a failing earlier one is skipped.
func TestProbeOrder(t *testing.T) {
	awsSlow := serve(t, &cloud{values: ec2Values(), delay: 200 * time.Millisecond,
		check: func(r *http.Request) int {
			if r.Method == http.MethodPut {
				return http.StatusNotFound
			}
			return 0
		}})
	gcp := serve(t, &cloud{values: map[string]string{"/computeMetadata/v1/instance/hostname": "gcp-host"}})
	down := serve(t, &cloud{check: func(*http.Request) int { return http.StatusInternalServerError }})

	cfg := testConfig(down)
	cfg.Timeout = 2 * time.Second
	cfg.Endpoints.AWS, cfg.Endpoints.GCP = awsSlow, gcp
	set, _ := Parse([]string{"aws", "gcp"}, cfg)
	dir, _ := openDir(t)
	res, err := Run(context.Background(), set, dir, Options{})
	if err != nil || res.Provider != "AWS" {
		t.Fatalf("slow-but-first AWS: Run = %+v, %v", res, err)
	}

	cfg.Endpoints.AWS = down
	set, _ = Parse([]string{"aws", "gcp"}, cfg)
	dir, root := openDir(t)
	var set1 []byte
	res, err = Run(context.Background(), set, dir, Options{SetHostname: func(h []byte) error { set1 = h; return nil }})
	if err != nil || res.Provider != "GCP" {
		t.Fatalf("AWS down: Run = %+v, %v", res, err)
	}
	if string(set1) != "gcp-host" {
		t.Errorf("SetHostname got %q", set1)
	}
	checkFiles(t, root, map[string]string{"provider": "GCP", "hostname": "gcp-host"})
}

func TestParse(t *testing.T) {
	set, err := Parse(nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range set.Network {
		names = append(names, p.String())
	}
	want := []string{"AWS", "GCP", "Hetzner", "openstack", "Scaleway", "Vultr", "DigitalOcean", "EquinixMetal"}
	if !slices.Equal(names, want) {
		t.Errorf("default network order %v, want %v", names, want)
	}
	if len(set.Device) != 1 || set.Device[0].String() != "fw_cfg" {
		t.Errorf("default devices %v (no CD-ROMs exist in an empty Config)", set.Device)
	}
	for _, bad := range []string{"azure", "file=", ""} {
		if _, err := Parse([]string{bad}, Config{}); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// TestUserdataOverridesHostname: JSON userdata can set the hostname, and it wins over the
// provider's, as in LinuxKit (expansion runs after extraction).
func TestUserdataOverridesHostname(t *testing.T) {
	c := &cloud{values: map[string]string{
		"/computeMetadata/v1/instance/hostname":             "from-metadata",
		"/computeMetadata/v1/instance/attributes/user-data": `{"hostname":{"content":"from-userdata\n"},"userdata":{"content":"nope"}}`,
	}}
	dir, root := openDir(t)
	var got string
	res, err := Run(context.Background(), Set{Network: []Provider{NewGCP(testConfig(serve(t, c)))}}, dir,
		Options{SetHostname: func(h []byte) error { got = string(h); return nil }})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("expected the reserved-name skip to be reported, got %v", err)
	}
	if got != "from-userdata" || res.Hostname != "from-userdata" {
		t.Errorf("hostname set to %q (result %q)", got, res.Hostname)
	}
	checkFiles(t, root, map[string]string{"userdata": c.values["/computeMetadata/v1/instance/attributes/user-data"]})
}

// TestDefaultProbeOrderIsLinuxKits pins the default probe order to LinuxKit's (master's
// pkg/metadata/main.go), less the providers mobykit lacks, plus fw_cfg last: an image moved
// from LinuxKit finds the same provider first on a machine where several would answer.
func TestDefaultProbeOrderIsLinuxKits(t *testing.T) {
	linuxkit := []string{"aws", "gcp", "hetzner", "openstack", "scaleway", "vultr", "digitalocean", "equinixmetal", "metaldata", "vmware", "cdrom"}
	notInMobykit := map[string]bool{"metaldata": true, "vmware": true}
	var want []string
	for _, n := range linuxkit {
		if !notInMobykit[n] {
			want = append(want, n)
		}
	}
	want = append(want, "fwcfg")
	if !slices.Equal(DefaultNames, want) {
		t.Errorf("DefaultNames = %v, want %v", DefaultNames, want)
	}
	for n := range notInMobykit {
		if _, err := Parse([]string{n}, Config{}); err == nil {
			t.Errorf("Parse(%q) accepted: then it belongs in DefaultNames and the docs", n)
		}
	}
	// "packet" (older LinuxKit's name) still parses, for old specs that name it.
	set, err := Parse([]string{"packet"}, Config{})
	if err != nil || len(set.Network) != 1 || set.Network[0].String() != "Packet" {
		t.Errorf("Parse(packet) = %v, %v", set.Network, err)
	}
}
