package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mobykit/mobykit/spi"
)

// memInstance is a small in-memory Instance used as the server side of interop tests.
type memInstance struct {
	mu   sync.Mutex
	next int
	m    map[spi.ID]spi.Description
}

func newMem() *memInstance { return &memInstance{m: map[spi.ID]spi.Description{}} }

func (p *memInstance) Validate(_ context.Context, props spi.Any) error {
	if strings.Contains(string(props), "bad") {
		return fmt.Errorf("invalid properties %s", props)
	}
	return nil
}

func (p *memInstance) Provision(_ context.Context, s spi.Spec) (*spi.ID, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	id := spi.ID(fmt.Sprintf("i-%03d", p.next))
	p.m[id] = spi.Description{ID: id, LogicalID: s.LogicalID, Tags: s.Tags, Properties: s.Properties}
	return &id, nil
}

func (p *memInstance) Label(_ context.Context, id spi.ID, labels map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.m[id]
	if !ok {
		return fmt.Errorf("instance %s not found", id)
	}
	if d.Tags == nil {
		d.Tags = map[string]string{}
	}
	for k, v := range labels {
		d.Tags[k] = v
	}
	p.m[id] = d
	return nil
}

func (p *memInstance) Destroy(_ context.Context, id spi.ID, _ spi.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, id)
	return nil
}

func (p *memInstance) DescribeInstances(_ context.Context, tags map[string]string, props bool) ([]spi.Description, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []spi.Description
next:
	for _, d := range p.m {
		for k, v := range tags {
			if d.Tags[k] != v {
				continue next
			}
		}
		if !props {
			d.Properties = nil
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func shortSocket(t *testing.T, name string) string {
	t.Helper()
	// unix socket paths are limited to 108 bytes; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "rpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

func startServer(t *testing.T, path string, plugins ...Plugin) *Server {
	t.Helper()
	s, err := Start(path, plugins...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestInteropInstance(t *testing.T) {
	sock := shortSocket(t, "inst")
	startServer(t, sock, InstanceTypes(map[string]spi.Instance{".": newMem(), "compute": newMem()}))
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket permissions %o, want 600", perm)
	}
	ctx := context.Background()
	c := NewInstanceClient(sock, "")
	lid := spi.LogicalID("10.0.0.1")
	id, err := c.Provision(ctx, spi.Spec{Properties: spi.Any(`{"n":12345678901234567890}`), Tags: map[string]string{"a": "b"}, LogicalID: &lid})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Label(ctx, *id, map[string]string{"c": "d"}); err != nil {
		t.Fatal(err)
	}
	ds, err := c.DescribeInstances(ctx, map[string]string{"a": "b"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].ID != *id || ds[0].Tags["c"] != "d" || *ds[0].LogicalID != lid || string(ds[0].Properties) != `{"n":12345678901234567890}` {
		t.Fatalf("describe: %+v", ds)
	}
	// Errors from the implementation arrive verbatim as *Error with code -32000.
	err = c.Validate(ctx, spi.Any(`{"bad":1}`))
	var rerr *Error
	if !errors.As(err, &rerr) || rerr.Code != CodeServer || rerr.Message != `invalid properties {"bad":1}` {
		t.Fatalf("validate error: %#v", err)
	}
	if err := c.Label(ctx, "nosuch", nil); err == nil || err.Error() != "instance nosuch not found" {
		t.Fatalf("label error: %v", err)
	}
	// Subtypes: the compute object is separate; an unknown one is no-plugin:<type>.
	cc := NewInstanceClient(sock, "compute")
	if ds, err := cc.DescribeInstances(ctx, nil, false); err != nil || len(ds) != 0 {
		t.Fatalf("compute describe: %v %v", ds, err)
	}
	if err := NewInstanceClient(sock, "xyz").Validate(ctx, nil); err == nil || err.Error() != "no-plugin:xyz" {
		t.Fatalf("unknown subtype: %v", err)
	}
	if err := c.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	if ds, err := c.DescribeInstances(ctx, nil, false); err != nil || len(ds) != 0 {
		t.Fatalf("after destroy: %v %v", ds, err)
	}
}

func TestInteropConcurrent(t *testing.T) {
	sock := shortSocket(t, "inst")
	startServer(t, sock, Instance(newMem()))
	c := NewInstanceClient(sock, "")
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Provision(context.Background(), spi.Spec{Tags: map[string]string{"g": "x"}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ds, err := c.DescribeInstances(context.Background(), map[string]string{"g": "x"}, false)
	if err != nil || len(ds) != 50 {
		t.Fatalf("got %d instances, err %v", len(ds), err)
	}
}

func TestHandshakeVersionCheck(t *testing.T) {
	sock := shortSocket(t, "fl")
	startServer(t, sock, Flavor(nopFlavor{}))
	ctx := context.Background()
	err := NewInstanceClient(sock, "").Validate(ctx, nil)
	if err == nil || err.Error() != "Plugin does not support interface Instance/0.6.1" {
		t.Fatalf("got %v", err)
	}
	c := NewClient(sock, spi.InterfaceSpec{Name: "Flavor", Version: "0.2.0"})
	err = c.Call(ctx, "Flavor.Validate", FlavorValidateRequest{}, &FlavorValidateResponse{})
	if err == nil || err.Error() != "Plugin supports Flavor interface version 0.1.1, client requires 0.2.0" {
		t.Fatalf("got %v", err)
	}
	if err := NewFlavorClient(sock, "").Validate(ctx, nil, spi.Allocation{Size: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestServerRefusesLiveSocketAndReplacesStale(t *testing.T) {
	sock := shortSocket(t, "p")
	s := startServer(t, sock, Instance(newMem()))
	if _, err := Start(sock, Instance(newMem())); !errors.Is(err, ErrInUse) {
		t.Fatalf("second server on a live socket: %v", err)
	}
	if err := NewInstanceClient(sock, "").Validate(context.Background(), nil); err != nil {
		t.Fatalf("live server disturbed: %v", err)
	}
	s.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket not removed on close: %v", err)
	}
	// A stale socket: bound, then the listener goes away without unlinking.
	ln, err := netListenNoUnlink(sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket fixture missing: %v", err)
	}
	startServer(t, sock, Instance(newMem()))
	if err := NewInstanceClient(sock, "").Validate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestNullResultAndErrorRules(t *testing.T) {
	cases := []struct {
		body, want string
	}{
		{`{"jsonrpc":"2.0","result":null,"id":1}`, "result is null"},
		{`{"jsonrpc":"2.0","id":1}`, "result is null"},
		{`{"jsonrpc":"2.0","error":{"code":-32000,"message":"boom","data":null},"result":{"OK":true},"id":1}`, "boom"},
		{`{"jsonrpc":"2.0","error":"plain text","id":1}`, `"plain text"`},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			var out InstanceValidateResponse
			err := decodeClientResponse([]byte(c.body), &out)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	var out InstanceValidateResponse
	if err := decodeClientResponse([]byte(`{"result":{"ok":true,"type":"x","extra":1}}`), &out); err != nil || !out.OK || out.Type != "x" {
		t.Fatalf("case-insensitive decode: %+v %v", out, err)
	}
}

type nopFlavor struct{}

func (nopFlavor) Validate(context.Context, spi.Any, spi.Allocation) error { return nil }
func (nopFlavor) Prepare(_ context.Context, _ spi.Any, s spi.Spec, _ spi.Allocation, _ spi.Index) (spi.Spec, error) {
	return s, nil
}
func (nopFlavor) Healthy(context.Context, spi.Any, spi.Description) (spi.Health, error) {
	return spi.Healthy, nil
}
func (nopFlavor) Drain(context.Context, spi.Any, spi.Description) error { return nil }

var _ = json.Marshal

func TestListenLongPath(t *testing.T) {
	dir := shortSocket(t, "")
	// A socket path of 100 bytes: fits sun_path, but its temporary name does not.
	long := filepath.Join(dir, strings.Repeat("x", 100-len(dir)-1))
	ln, err := Listen(long)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(long)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", fi, err)
	}
}
