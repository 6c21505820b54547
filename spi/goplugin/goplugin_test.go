package goplugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// TestMain turns the test binary into a plugin executable when go-plugin starts it (the magic
// cookie is in the environment), as go-plugin's own tests do.
func TestMain(m *testing.M) {
	if os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue && os.Getenv("GOPLUGIN_TEST_SERVE") != "" {
		Serve(rpc.InstanceTypes(map[string]spi.Instance{".": newMem(), "compute": newMem()}), rpc.Flavor(healthyFlavor{}))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type mem struct {
	mu sync.Mutex
	n  int
	m  map[spi.ID]spi.Spec
}

func newMem() *mem { return &mem{m: map[spi.ID]spi.Spec{}} }

func (p *mem) Validate(_ context.Context, props spi.Any) error {
	if strings.Contains(string(props), "bad") {
		return errors.New("bad properties: " + string(props))
	}
	return nil
}
func (p *mem) Provision(_ context.Context, s spi.Spec) (*spi.ID, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	id := spi.ID(fmt.Sprintf("vm-%d", p.n))
	p.m[id] = s
	return &id, nil
}
func (p *mem) Label(context.Context, spi.ID, map[string]string) error { return nil }
func (p *mem) Destroy(_ context.Context, id spi.ID, _ spi.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, id)
	return nil
}
func (p *mem) DescribeInstances(_ context.Context, tags map[string]string, props bool) ([]spi.Description, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []spi.Description{}
	for id, s := range p.m {
		d := spi.Description{ID: id, Tags: s.Tags, LogicalID: s.LogicalID}
		if props {
			d.Properties = s.Properties
		}
		out = append(out, d)
	}
	return out, nil
}

type healthyFlavor struct{}

func (healthyFlavor) Validate(context.Context, spi.Any, spi.Allocation) error { return nil }
func (healthyFlavor) Prepare(_ context.Context, _ spi.Any, s spi.Spec, _ spi.Allocation, _ spi.Index) (spi.Spec, error) {
	s.Init = "prepared"
	return s, nil
}
func (healthyFlavor) Healthy(context.Context, spi.Any, spi.Description) (spi.Health, error) {
	return spi.Healthy, nil
}
func (healthyFlavor) Drain(context.Context, spi.Any, spi.Description) error {
	return errors.New("cannot drain")
}

// exerciseInstance runs the same checks over any transport.
func exerciseInstance(t *testing.T, inst spi.Instance, typed spi.Instance, unknown spi.Instance) {
	t.Helper()
	ctx := context.Background()
	id, err := inst.Provision(ctx, spi.Spec{Properties: spi.Any(`{"n":12345678901234567890,"f":1.0}`), Tags: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := inst.DescribeInstances(ctx, nil, true)
	if err != nil || len(ds) != 1 || ds[0].ID != *id || string(ds[0].Properties) != `{"n":12345678901234567890,"f":1.0}` {
		t.Fatalf("describe: %+v %v", ds, err)
	}
	err = inst.Validate(ctx, spi.Any(`{"bad":true}`))
	var rerr *rpc.Error
	if !errors.As(err, &rerr) || rerr.Message != `bad properties: {"bad":true}` {
		t.Fatalf("error not carried verbatim: %#v", err)
	}
	if ds, err := typed.DescribeInstances(ctx, nil, false); err != nil || len(ds) != 0 {
		t.Fatalf("typed object shares state: %v %v", ds, err)
	}
	if err := unknown.Validate(ctx, nil); err == nil || err.Error() != "no-plugin:xyz" {
		t.Fatalf("unknown subtype: %v", err)
	}
	if err := inst.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
}

// TestInProcess uses go-plugin's in-process gRPC harness.
func TestInProcess(t *testing.T) {
	client, _ := plugin.TestPluginGRPCConn(t, false, PluginMap(rpc.InstanceTypes(map[string]spi.Instance{".": newMem(), "compute": newMem()})))
	defer client.Close()
	raw, err := client.Dispense(pluginName)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*Conn)
	h, err := c.Hello(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := rpc.CheckInterface(h, spi.InstanceInterface); err != nil {
		t.Fatal(err)
	}
	if objs := h.Objects["Instance/0.6.1"]; len(objs) != 2 || objs[0].Name != "." || objs[1].Name != "compute" {
		t.Fatalf("hello: %+v", h)
	}
	exerciseInstance(t, rpc.NewInstanceClientFrom(c, ""), rpc.NewInstanceClientFrom(c, "compute"), rpc.NewInstanceClientFrom(c, "xyz"))
	err = c.Call(context.Background(), "Flavor.Validate", rpc.FlavorValidateRequest{}, &rpc.FlavorValidateResponse{})
	if err == nil || err.Error() != `rpc: can't find service "Flavor.Validate"` {
		t.Fatalf("missing service: %v", err)
	}
	err = c.Call(context.Background(), "Instance.Nope", struct{}{}, &struct{}{})
	if err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Fatalf("missing method: %v", err)
	}
}

func pluginCmd() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GOPLUGIN_TEST_SERVE=1")
	return cmd
}

// TestSubprocess starts this test binary as a real plugin executable, uses it directly, then
// bridges it onto a unix socket and uses it through spi/rpc.
func TestSubprocess(t *testing.T) {
	c, err := Open(pluginCmd())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	inst, err := c.Instance(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	typed, _ := c.Instance(ctx, "compute")
	unknown, _ := c.Instance(ctx, "xyz")
	exerciseInstance(t, inst, typed, unknown)
	fl, err := c.Flavor(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if h, err := fl.Healthy(ctx, nil, spi.Description{ID: "x"}); err != nil || h != spi.Healthy {
		t.Fatalf("healthy: %v %v", h, err)
	}
	if err := fl.Drain(ctx, nil, spi.Description{}); err == nil || err.Error() != "cannot drain" {
		t.Fatalf("drain: %v", err)
	}
	if _, err := c.Group(ctx, "g"); err == nil || err.Error() != "Plugin does not support interface Group/0.1.1" {
		t.Fatalf("group check: %v", err)
	}

	// Bridge: the executable's objects served on a unix socket.
	plugins, err := c.Plugins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "gop")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "bridged")
	srv, err := rpc.Start(sock, plugins...)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	exerciseInstance(t, rpc.NewInstanceClient(sock, ""), rpc.NewInstanceClient(sock, "compute"), rpc.NewInstanceClient(sock, "xyz"))
	spec, err := rpc.NewFlavorClient(sock, "").Prepare(ctx, nil, spi.Spec{Tags: map[string]string{"k": "v"}}, spi.Allocation{Size: 1}, spi.Index{})
	if err != nil || spec.Init != "prepared" || spec.Tags["k"] != "v" {
		t.Fatalf("bridged prepare: %+v %v", spec, err)
	}

	c.Close()
	if !c.Exited() {
		t.Error("plugin process still running after Close")
	}
}

// TestHandshakeRefusals: a protocol version mismatch and an executable that is not a plugin.
func TestHandshakeRefusals(t *testing.T) {
	hs := Handshake
	hs.ProtocolVersion = 99
	if c, err := open(pluginCmd(), hs); err == nil {
		c.Close()
		t.Fatal("protocol version 99 accepted")
	} else if !strings.Contains(err.Error(), "version") {
		t.Errorf("version mismatch error does not say so: %v", err)
	}
	if c, err := Open(exec.Command("true")); err == nil {
		c.Close()
		t.Fatal("a non-plugin executable accepted")
	}
}
