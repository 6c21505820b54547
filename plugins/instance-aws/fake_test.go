package instanceaws

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobykit/mobykit/plugins/instance-aws/internal/awstest"
	"github.com/mobykit/mobykit/spi"
)

// fakeEC2 answers EC2 Query API calls (form-encoded POST, XML answers as documented in the
// Amazon EC2 API reference). Each action's answers are queued: the last one repeats.
type fakeEC2 struct {
	t       *testing.T
	mu      sync.Mutex
	answers map[string][]fakeAnswer
	calls   map[string][]url.Values
}

type fakeAnswer struct {
	status int
	body   string
}

func newFakeEC2(t *testing.T) (*fakeEC2, *Plugin) {
	f := &fakeEC2{t: t, answers: map[string][]fakeAnswer{}, calls: map[string][]url.Values{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, New(awstest.Config(t, srv.URL), Options{})
}

func (f *fakeEC2) on(action string, answers ...fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[action] = answers
}

func (f *fakeEC2) called(action string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[action]
}

func (f *fakeEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	action := r.PostForm.Get("Action")
	f.mu.Lock()
	f.calls[action] = append(f.calls[action], r.PostForm)
	q := f.answers[action]
	var a fakeAnswer
	switch len(q) {
	case 0:
		a = ec2Error(400, "InvalidAction", "The action "+action+" is not valid for this web service.")
	case 1:
		a = q[0]
	default:
		a, f.answers[action] = q[0], q[1:]
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(a.status)
	fmt.Fprint(w, a.body)
}

// ec2Error is EC2's error document (Amazon EC2 API reference, "Error codes").
func ec2Error(status int, code, msg string) fakeAnswer {
	return fakeAnswer{status, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>` + code + `</Code><Message>` + msg + `</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>`}
}

func ok(action, inner string) fakeAnswer {
	return fakeAnswer{200, `<?xml version="1.0" encoding="UTF-8"?>
<` + action + `Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>59dbff89-35bd-4eac-99ed-be587example</requestId>` + inner + `</` + action + `Response>`}
}

const runOK = `<reservationId>r-1234567890abcdef0</reservationId><ownerId>123456789012</ownerId><groupSet/>
<instancesSet><item><instanceId>i-1234567890abcdef0</instanceId><imageId>ami-0123456789abcdef0</imageId>
<instanceState><code>0</code><name>pending</name></instanceState><instanceType>t3.small</instanceType></item></instancesSet>`

const testProps = `{"RunInstancesInput":{"ImageId":"ami-0123456789abcdef0","InstanceType":"t3.small"}}`

func TestThrottlingIsRetriedWithTheSameClientToken(t *testing.T) {
	f, p := newFakeEC2(t)
	f.on("RunInstances",
		ec2Error(503, "RequestLimitExceeded", "Request limit exceeded."),
		ec2Error(500, "InternalError", "An internal error has occurred."),
		ok("RunInstances", runOK))
	id, err := p.Provision(context.Background(), spi.Spec{Properties: spi.Any(testProps), Tags: map[string]string{spi.GroupTag: "g"}, Init: "hello"})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if *id != "i-1234567890abcdef0" {
		t.Errorf("ID = %s", *id)
	}
	calls := f.called("RunInstances")
	if len(calls) != 3 {
		t.Fatalf("RunInstances attempts = %d, want 3 (two retried errors)", len(calls))
	}
	tok := calls[0].Get("ClientToken")
	if tok == "" {
		t.Fatal("RunInstances sent no ClientToken")
	}
	for i, c := range calls {
		if c.Get("ClientToken") != tok {
			t.Errorf("attempt %d ClientToken %q, want %q: retries must be idempotent", i+1, c.Get("ClientToken"), tok)
		}
		if c.Get("UserData") != "aGVsbG8=" || c.Get("MinCount") != "1" || c.Get("MaxCount") != "1" {
			t.Errorf("attempt %d: UserData %q MinCount %q MaxCount %q", i+1, c.Get("UserData"), c.Get("MinCount"), c.Get("MaxCount"))
		}
	}
	// A second Provision gets a new token.
	if _, err := p.Provision(context.Background(), spi.Spec{Properties: spi.Any(testProps)}); err != nil {
		t.Fatal(err)
	}
	if calls := f.called("RunInstances"); calls[3].Get("ClientToken") == tok {
		t.Error("two Provision calls shared a ClientToken: the second would not launch")
	}
}

func TestPermanentErrorsNameTheCallAndInstance(t *testing.T) {
	f, p := newFakeEC2(t)
	ctx := context.Background()
	f.on("RunInstances", ec2Error(400, "InvalidParameterValue", "Value (t3.small) for parameter instanceType is invalid."))
	f.on("TerminateInstances", ec2Error(403, "UnauthorizedOperation", "You are not authorized to perform this operation."))
	f.on("CreateTags", ec2Error(400, "InvalidParameterValue", "Tag value is invalid."))
	f.on("DescribeInstances", ec2Error(403, "AuthFailure", "AWS was not able to validate the provided access credentials"))
	lid := spi.LogicalID("10.0.0.9")

	props := spi.Any(`{"RunInstancesInput":{"ImageId":"ami-0123456789abcdef0","InstanceType":"t3.small","SubnetId":"subnet-0123abcd"}}`)
	_, err := p.Provision(ctx, spi.Spec{Properties: props, Tags: map[string]string{spi.GroupTag: "workers"}, LogicalID: &lid})
	for _, want := range []string{"RunInstances", `"workers"`, `"10.0.0.9"`, "InvalidParameterValue"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Provision error %v does not contain %q", err, want)
		}
	}
	if calls := f.called("RunInstances"); len(calls) != 1 {
		t.Errorf("a permanent error was attempted %d times", len(calls))
	} else if c := calls[0]; c.Get("NetworkInterface.1.PrivateIpAddress") != "10.0.0.9" || c.Get("NetworkInterface.1.SubnetId") != "subnet-0123abcd" ||
		c.Get("NetworkInterface.1.DeleteOnTermination") != "true" || c.Get("NetworkInterface.1.DeviceIndex") != "0" || c.Get("SubnetId") != "" {
		t.Errorf("RunInstances for a quorum member: %v", c)
	}
	err = p.Destroy(ctx, "i-0fedcba9876543210", spi.Context{Reason: spi.ReasonRollingUpdate})
	for _, want := range []string{"TerminateInstances", "i-0fedcba9876543210", "UnauthorizedOperation", "rolling_update"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Destroy error %v does not contain %q", err, want)
		}
	}
	err = p.Label(ctx, "i-0fedcba9876543210", map[string]string{"a": "b"})
	for _, want := range []string{"CreateTags", "i-0fedcba9876543210"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Label error %v does not contain %q", err, want)
		}
	}
	_, err = p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "workers"}, false)
	if err == nil || !strings.Contains(err.Error(), "DescribeInstances") || !strings.Contains(err.Error(), "AuthFailure") {
		t.Errorf("DescribeInstances error %v", err)
	}
}

func TestLabelRetriesWhileEC2DoesNotKnowTheInstanceYet(t *testing.T) {
	f, p := newFakeEC2(t)
	f.on("CreateTags",
		ec2Error(400, "InvalidInstanceID.NotFound", "The instance ID 'i-1234567890abcdef0' does not exist"),
		ok("CreateTags", "<return>true</return>"))
	if err := p.Label(context.Background(), "i-1234567890abcdef0", map[string]string{"infrakit.config.hash": "x"}); err != nil {
		t.Fatalf("Label: %v", err)
	}
	calls := f.called("CreateTags")
	if len(calls) != 2 || calls[1].Get("ResourceId.1") != "i-1234567890abcdef0" || calls[1].Get("Tag.1.Key") != "infrakit.config.hash" {
		t.Fatalf("CreateTags calls = %v", calls)
	}
}

// TestConsistencyWindow: EC2 lists new instances late and terminated ones for a while; the
// plugin must list an instance as soon as Provision returns and stop listing it once Destroy
// succeeded (docs/infrakit/PROTOCOL.md §13.2).
func TestConsistencyWindow(t *testing.T) {
	f, p := newFakeEC2(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	f.on("RunInstances", ok("RunInstances", runOK))
	f.on("DescribeInstances",
		ok("DescribeInstances", "<reservationSet/>"),                                                        // listing: not there yet
		ec2Error(400, "InvalidInstanceID.NotFound", "The instance ID 'i-1234567890abcdef0' does not exist"), // by ID: unknown yet
		ok("DescribeInstances", "<reservationSet/>"),                                                        // other group's listing
		ok("DescribeInstances", "<reservationSet/>"))                                                        // after the window
	tags := map[string]string{spi.GroupTag: "g", spi.ConfigHashTag: "h"}
	id, err := p.Provision(ctx, spi.Spec{Properties: spi.Any(testProps), Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	descs, err := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g"}, true)
	if err != nil || len(descs) != 1 || descs[0].ID != *id || descs[0].Tags[spi.ConfigHashTag] != "h" {
		t.Fatalf("DescribeInstances right after Provision = %+v, %v; want the new instance", descs, err)
	}
	if !strings.Contains(string(descs[0].Properties), `"State":"pending"`) {
		t.Errorf("Properties = %s", descs[0].Properties)
	}
	// Another group's listing does not get it.
	if descs, err := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "other"}, false); err != nil || len(descs) != 0 {
		t.Errorf("other group's listing = %+v, %v", descs, err)
	}
	// Past the window, EC2's word is final.
	now = now.Add(consistencyWindow + time.Second)
	if descs, err := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g"}, false); err != nil || len(descs) != 0 {
		t.Errorf("listing after the window = %+v, %v; want none", descs, err)
	}
	if n := len(f.called("DescribeInstances")); n != 4 {
		t.Errorf("DescribeInstances calls = %d, want 4 (listing, by ID, other listing, listing)", n)
	}

	// Now the opposite: EC2 still lists an instance as running after TerminateInstances.
	running := `<reservationSet><item><reservationId>r-1</reservationId><ownerId>1</ownerId><groupSet/><instancesSet><item>
<instanceId>i-1234567890abcdef0</instanceId><instanceState><code>16</code><name>running</name></instanceState>
<tagSet><item><key>infrakit.group</key><value>g</value></item></tagSet></item></instancesSet></item></reservationSet>`
	f.on("DescribeInstances", ok("DescribeInstances", running))
	f.on("TerminateInstances", ok("TerminateInstances", `<instancesSet><item><instanceId>i-1234567890abcdef0</instanceId>
<currentState><code>32</code><name>shutting-down</name></currentState><previousState><code>16</code><name>running</name></previousState></item></instancesSet>`))
	if descs, err := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g"}, false); err != nil || len(descs) != 1 {
		t.Fatalf("listing before Destroy = %+v, %v", descs, err)
	}
	if err := p.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	if descs, err := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g"}, false); err != nil || len(descs) != 0 {
		t.Errorf("listing right after Destroy = %+v, %v; want none", descs, err)
	}
	if q := f.called("DescribeInstances"); q[len(q)-1].Get("Filter.1.Name") != "instance-state-name" || q[len(q)-1].Get("Filter.2.Name") != "tag:infrakit.group" || q[len(q)-1].Get("Filter.2.Value.1") != "g" {
		t.Errorf("DescribeInstances filters = %v", q[len(q)-1])
	}
}

func TestProvisionWithoutImage(t *testing.T) {
	f, p := newFakeEC2(t)
	_, err := p.Provision(context.Background(), spi.Spec{Properties: spi.Any(`{"RunInstancesInput":{"InstanceType":"t3.small"}}`), Tags: map[string]string{spi.GroupTag: "g"}})
	if err == nil || !strings.Contains(err.Error(), "no image") || !strings.Contains(err.Error(), "RunInstancesInput.ImageId") || !strings.Contains(err.Error(), `"g"`) {
		t.Fatalf("Provision without an image: %v", err)
	}
	if n := len(f.called("RunInstances")); n != 0 {
		t.Errorf("RunInstances called %d times", n)
	}
}

func TestProvisionLogicalIPNeedsSubnet(t *testing.T) {
	f, p := newFakeEC2(t)
	lid := spi.LogicalID("10.0.1.10")
	_, err := p.Provision(context.Background(), spi.Spec{Properties: spi.Any(testProps), Tags: map[string]string{spi.GroupTag: "q"}, LogicalID: &lid})
	if err == nil || !strings.Contains(err.Error(), "RunInstancesInput.SubnetId") || !strings.Contains(err.Error(), "10.0.1.10") {
		t.Fatalf("Provision: %v", err)
	}
	if n := len(f.called("RunInstances")); n != 0 {
		t.Errorf("RunInstances called %d times", n)
	}
	// A logical ID that is not an address is only a tag.
	f.on("RunInstances", ok("RunInstances", runOK))
	name := spi.LogicalID("etcd-a")
	if _, err := p.Provision(context.Background(), spi.Spec{Properties: spi.Any(testProps), Tags: map[string]string{spi.GroupTag: "q"}, LogicalID: &name}); err != nil {
		t.Fatal(err)
	}
	c := f.called("RunInstances")[0]
	if c.Get("PrivateIpAddress") != "" || c.Get("NetworkInterface.1.PrivateIpAddress") != "" {
		t.Errorf("a non-address logical ID became an address: %v", c)
	}
	found := false
	for k, v := range c {
		if strings.HasPrefix(k, "TagSpecification.1.Tag.") && strings.HasSuffix(k, ".Value") && v[0] == "etcd-a" {
			found = true
		}
	}
	if !found {
		t.Errorf("logical ID tag missing from %v", c)
	}
}

func TestProvisionMobyKernelInitrd(t *testing.T) {
	f, p := newFakeEC2(t)
	dir := t.TempDir()
	for _, n := range []string{"image-kernel", "image-initrd.img", "image-cmdline"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	props := spi.Any(fmt.Sprintf(`{"RunInstancesInput":{"InstanceType":"t3.small"},"moby":%q}`, filepath.Join(dir, "image")))
	_, err := p.Provision(context.Background(), spi.Spec{Properties: props, Tags: map[string]string{spi.GroupTag: "g"}})
	if err == nil || !strings.Contains(err.Error(), "kernel and initrd, which EC2 cannot boot") {
		t.Fatalf("Provision: %v", err)
	}
	if len(f.called("RunInstances"))+len(f.called("DescribeImages")) != 0 {
		t.Error("AWS was called")
	}
}

func TestMaxAttemptsFromEnvironment(t *testing.T) {
	t.Setenv("AWS_MAX_ATTEMPTS", "2")
	f := &fakeEC2{t: t, answers: map[string][]fakeAnswer{}, calls: map[string][]url.Values{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "a")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "b")
	p, err := Open(context.Background(), Options{Endpoint: srv.URL, Region: "eu-west-1", MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.on("TerminateInstances", ec2Error(503, "RequestLimitExceeded", "Request limit exceeded."))
	f.on("DescribeInstances", ec2Error(503, "RequestLimitExceeded", "Request limit exceeded."))
	err = p.Destroy(context.Background(), "i-1234567890abcdef0", spi.Context{Reason: spi.ReasonTerminate})
	if err == nil || !strings.Contains(err.Error(), "RequestLimitExceeded") {
		t.Fatalf("Destroy: %v", err)
	}
	if n := len(f.called("TerminateInstances")); n != 2 {
		t.Errorf("%d attempts with AWS_MAX_ATTEMPTS=2", n)
	}
}
