package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mobykit/mobykit/group"
	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/spi"
)

const specJSON = `{"ID":"web","Properties":{"Allocation":{"Size":2},"Instance":{"Plugin":"fake","Properties":{"v":1}},"Flavor":{"Plugin":"fake","Properties":{}}}}`

const specYAML = `ID: web
Properties:
  Allocation:
    Size: 2
  Instance:
    Plugin: fake
    Properties:
      v: 1
  Flavor:
    Plugin: fake
    Properties: {}
`

func TestParseSpec(t *testing.T) {
	j, err := ParseSpec("web.json", []byte(specJSON))
	if err != nil {
		t.Fatal(err)
	}
	y, err := ParseSpec("web.yml", []byte(specYAML))
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	json.Unmarshal(j.Properties, &a)
	json.Unmarshal(y.Properties, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if j.ID != y.ID || string(ja) != string(jb) {
		t.Errorf("JSON and YAML differ:\n%s\n%s", ja, jb)
	}
	for name, doc := range map[string]string{"no id": `{"Properties":{}}`, "no props": `{"ID":"x"}`, "bad": `{`, "bad yaml": "a: [", "yaml list": "- 1"} {
		if _, err := ParseSpec("f", []byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func newController(t *testing.T, health fake.HealthFunc) (*group.Controller, *fake.Cloud) {
	return newControllerPoll(t, health, 10*time.Millisecond)
}

func newControllerPoll(t *testing.T, health fake.HealthFunc, poll time.Duration) (*group.Controller, *fake.Cloud) {
	cloud := fake.New(nil)
	cloud.Health = health
	c := group.New(fake.Plugins{Cloud: cloud}, store.NewMemory(), group.Options{PollInterval: poll,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c, cloud
}

func TestCommitWatchDescribe(t *testing.T) {
	c, _ := newController(t, nil)
	ctx := context.Background()
	s, _ := ParseSpec("web.json", []byte(specJSON))
	var out bytes.Buffer
	p := Printer{W: &out}
	d, err := c.CommitGroup(ctx, s, false)
	if err != nil {
		t.Fatal(err)
	}
	p.Commit(s.ID, d, false)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := Watch(wctx, c, s.ID, 5*time.Millisecond, &out, false, UntilExist, nil); err != nil {
		t.Fatalf("watch: %v\n%s", err, out.String())
	}
	s2, _ := ParseSpec("web.json", []byte(strings.Replace(specJSON, `"v":1`, `"v":2`, 1)))
	d, err = c.CommitGroup(ctx, s2, false)
	if err != nil || d != "Performing a rolling update on 2 instances" {
		t.Fatalf("%q %v", d, err)
	}
	if err := Watch(wctx, c, s.ID, 5*time.Millisecond, &out, false, UntilExist, nil); err != nil {
		t.Fatalf("watch: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"Committed web: Managing 2 instances", "rollout rolling:", "rollout idle: 2/2 updated"} {
		if !strings.Contains(text, want) {
			t.Errorf("watch output lacks %q:\n%s", want, text)
		}
	}
	desc, _ := c.DescribeGroup(ctx, "web")
	st, _ := c.UpdateStatus(ctx, "web")
	out.Reset()
	if err := p.Describe("web", desc, &st); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "current") != 2 || !strings.Contains(out.String(), "2 members, converged") {
		t.Errorf("describe:\n%s", out.String())
	}
	out.Reset()
	if err := (Printer{W: &out, JSON: true}).Describe("web", desc, &st); err != nil {
		t.Fatal(err)
	}
	var back Description
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || len(back.Instances) != 2 || back.Rollout.Phase != "idle" {
		t.Errorf("describe json: %v %s", err, out.String())
	}
	specs, _ := c.InspectGroups(ctx)
	out.Reset()
	Printer{W: &out}.List(Summaries(specs))
	if !strings.Contains(out.String(), "web") || !strings.Contains(out.String(), "fake") {
		t.Errorf("ls:\n%s", out.String())
	}
}

func TestWatchPaused(t *testing.T) {
	// Members of config v3 never become healthy, so the rollout stalls until paused.
	c, _ := newController(t, func(inst fake.Instance, _ time.Duration) spi.Health {
		if strings.Contains(string(inst.Spec.Properties), `"v":3`) {
			return spi.Unknown
		}
		return spi.Healthy
	})
	ctx := context.Background()
	s, _ := ParseSpec("web.json", []byte(specJSON))
	if _, err := c.CommitGroup(ctx, s, false); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := Watch(wctx, c, s.ID, 5*time.Millisecond, io.Discard, false, UntilExist, nil); err != nil {
		t.Fatal(err)
	}
	s3, _ := ParseSpec("web.json", []byte(strings.Replace(specJSON, `"v":1`, `"v":3`, 1)))
	if _, err := c.CommitGroup(ctx, s3, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if err := c.PauseUpdate(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Watch(wctx, c, s.ID, 5*time.Millisecond, &out, true, UntilExist, nil)
	if !errors.Is(err, ErrPaused) || !strings.Contains(err.Error(), "paused by user") {
		t.Fatalf("watch: %v", err)
	}
	var st spi.RolloutStatus
	if e := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &st); e != nil || st.Phase != "paused" {
		t.Fatalf("json watch line: %v %q", e, out.String())
	}
}

// `group commit --wait` on a new group waits for what a user means, healthy members: it used
// to return as soon as the members existed (2 s), minutes before the first one served. Members
// here boot in 5 s; the controller polls once a minute (synctest's clock: no real time passes).
func TestWaitForHealthyNotJustExisting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const boot = 5 * time.Second
		c, cloud := newControllerPoll(t, func(_ fake.Instance, age time.Duration) spi.Health {
			if age < boot {
				return spi.Unknown
			}
			return spi.Healthy
		}, time.Minute)
		ctx := context.Background()
		s, _ := ParseSpec("web.json", []byte(specJSON))
		if _, err := c.CommitGroup(ctx, s, false); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Watch(ctx, c, s.ID, time.Second, &out, false, UntilExist, nil); err != nil {
			t.Fatal(err)
		}
		ms := cloud.Snapshot(s.ID)
		if len(ms) != 2 || ms[0].Health == spi.Healthy || ms[1].Health == spi.Healthy {
			t.Fatalf("--wait-for=exist returned with %+v: want 2 members, still booting", ms)
		}
		if !strings.Contains(out.String(), "done: 2 members exist (health not waited for)") {
			t.Errorf("--wait-for=exist does not say what it waited for:\n%s", out.String())
		}
		out.Reset()
		if err := Watch(ctx, c, s.ID, time.Second, &out, false, UntilHealthy, nil); err != nil {
			t.Fatal(err)
		}
		for _, m := range cloud.Snapshot(s.ID) {
			if m.Health != spi.Healthy {
				t.Fatalf("--wait-for=healthy returned while %s is %s", m.ID, m.Health)
			}
		}
		for _, want := range []string{"waiting for health: 0/2 healthy", "done: 2 members at", "all seen healthy"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("--wait-for=healthy output lacks %q:\n%s", want, out.String())
			}
		}
	})
}

func TestParseUntil(t *testing.T) {
	for in, want := range map[string]Until{"exist": UntilExist, "healthy": UntilHealthy} {
		if got, err := ParseUntil(in); err != nil || got != want {
			t.Errorf("ParseUntil(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseUntil("ready"); err == nil || !strings.Contains(err.Error(), `--wait-for "ready"`) {
		t.Errorf("ParseUntil(ready): %v", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add("web.json", []byte(specJSON))
	f.Add("web.yml", []byte(specYAML))
	f.Add("x", []byte("ID: [1"))
	f.Fuzz(func(t *testing.T, name string, doc []byte) {
		s, err := ParseSpec(name, doc)
		if err != nil {
			return
		}
		if s.ID == "" || len(s.Properties) == 0 {
			t.Fatalf("accepted a spec without ID or Properties: %+v", s)
		}
		if !json.Valid(s.Properties) {
			t.Fatalf("invalid Properties JSON %q", s.Properties)
		}
	})
}

// An unfinished DestroyGroup is shown as such, not as a rollout.
func TestStatusLineDestroying(t *testing.T) {
	got := StatusLine(spi.RolloutStatus{Phase: "destroying", Desired: 3, Message: "DestroyGroup unfinished: 1 of 3 members not destroyed: [i-2]"})
	if want := "destroying: DestroyGroup unfinished: 1 of 3 members not destroyed: [i-2]"; got != want {
		t.Fatalf("StatusLine = %q, want %q", got, want)
	}
}
