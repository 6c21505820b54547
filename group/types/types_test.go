package types

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/infrakitvectors"
	"github.com/mobykit/mobykit/spi"
)

func TestInstanceHashVectors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(infrakitvectors.Dir(t), "config-hash.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name       string
		Instance   json.RawMessage
		Flavor     json.RawMessage
		Hash       string
		HashedText string `json:"hashed_text"`
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 15 {
		t.Fatalf("config-hash.json has %d cases, want 15", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			doc := []byte(`{"Allocation":{"Size":1},"Instance":` + string(c.Instance) + `,"Flavor":` + string(c.Flavor) + `}`)
			p, err := Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			text, err := p.HashedText()
			if err != nil {
				t.Fatal(err)
			}
			if string(text) != c.HashedText {
				t.Errorf("hashed text\n got %q\nwant %q", text, c.HashedText)
			}
			h, err := p.InstanceHash()
			if err != nil {
				t.Fatal(err)
			}
			if h != c.Hash {
				t.Errorf("hash %s, want %s", h, c.Hash)
			}
			if len(h) != 32 {
				t.Errorf("hash %q is %d characters, want 32", h, len(h))
			}
		})
	}
}

func TestHashIgnoresAllocationAndUpdating(t *testing.T) {
	a, _ := Parse([]byte(`{"Allocation":{"Size":1},"Instance":{"Plugin":"file","Properties":{}},"Flavor":{"Plugin":"vanilla","Properties":{}}}`))
	b, _ := Parse([]byte(`{"Allocation":{"LogicalIDs":["a"]},"Updating":{"Count":3,"MaxSurge":"50%"},"Instance":{"Plugin":"file","Properties":{}},"Flavor":{"Plugin":"vanilla","Properties":{}}}`))
	ha, _ := a.InstanceHash()
	hb, _ := b.InstanceHash()
	if ha != hb {
		t.Errorf("Allocation/Updating changed the hash: %s vs %s", ha, hb)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, id, doc string
		want          error
		wantText      string
	}{
		{"blank id", "", `{"Allocation":{"Size":1}}`, ErrBlankID, "Group ID must not be blank"},
		{"blank allocation", "g", `{}`, ErrBlankAllocation, "Allocation must not be blank"},
		{"both allocations", "g", `{"Allocation":{"Size":1,"LogicalIDs":["a"]}}`, ErrTwoAllocations, "Only one Allocation method may be used"},
		{"both updating", "g", `{"Allocation":{"Size":1},"Updating":{"Count":1,"Duration":"1s"}}`, ErrTwoUpdatingMethods, "Only one Updating method may be used"},
		{"bad on failure", "g", `{"Allocation":{"Size":1},"Updating":{"OnFailure":"explode"}}`, nil, `group g: Updating.OnFailure "explode": want "pause" or "rollback"`},
		{"percent above 100", "g", `{"Allocation":{"Size":1},"Updating":{"MaxSurge":"150%"}}`, nil, `group g: Updating.MaxSurge 150% is above 100%`},
		{"duplicate logical id", "g", `{"Allocation":{"LogicalIDs":["a","a"]}}`, nil, `group g: Allocation.LogicalIDs lists "a" twice`},
		{"ok scaled", "g", `{"Allocation":{"Size":1},"Updating":{"MaxSurge":"25%","MaxUnavailable":1,"HealthTimeout":"5m","OnFailure":"rollback"}}`, nil, ""},
		{"ok quorum", "g", `{"Allocation":{"LogicalIDs":["a","b"]}}`, nil, ""},
		{"traversing id", "../../etc", `{"Allocation":{"Size":1}}`, nil, `group ID "../../etc": '/' is not allowed in a group ID`},
		{"dot-dot id", "..", `{"Allocation":{"Size":1}}`, nil, `group ID "..": not allowed`},
		{"backslash id", `a\b`, `{"Allocation":{"Size":1}}`, nil, `group ID "a\\b": '\\' is not allowed in a group ID`},
		{"control id", "a\nb", `{"Allocation":{"Size":1}}`, nil, `group ID "a\nb": '\n' is not allowed in a group ID`},
		{"long id", strings.Repeat("x", MaxIDLength+1), `{"Allocation":{"Size":1}}`, nil, `group ID "xxxxxxxxxxxxxxxxxxxx"...: longer than 128 bytes`},
		{"ok unusual id", "web 1%.ünï", `{"Allocation":{"Size":1}}`, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(spi.GroupID(tc.id), p)
			if tc.wantText == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantText {
				t.Fatalf("error %v, want %q", err, tc.wantText)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %v", err, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, doc := range []string{
		`{"Updating":{"MaxSurge":"x"}}`,
		`{"Updating":{"MaxSurge":-1}}`,
		`{"Updating":{"MaxSurge":1.5}}`,
		`{"Updating":{"HealthTimeout":"soon"}}`,
		`{"Allocation":{"Size":-1}}`,
		`{"Instance":{"Plugin":3}}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("Parse(%s) succeeded", doc)
		}
	}
}

func TestStrategy(t *testing.T) {
	for _, tc := range []struct {
		name, doc             string
		surge, unavail, polls int
		timeout               time.Duration
		onFailure             string
	}{
		{"defaults", `{"Allocation":{"Size":4}}`, 1, 0, 1, DefaultHealthTimeout, "pause"},
		{"both zero becomes unavailable 1", `{"Allocation":{"Size":4},"Updating":{"MaxSurge":0,"MaxUnavailable":0}}`, 0, 1, 1, DefaultHealthTimeout, "pause"},
		{"surge rounds up, unavailable down", `{"Allocation":{"Size":10},"Updating":{"MaxSurge":"25%","MaxUnavailable":"25%"}}`, 3, 2, 1, DefaultHealthTimeout, "pause"},
		{"small percentages fencepost", `{"Allocation":{"Size":3},"Updating":{"MaxSurge":"0%","MaxUnavailable":"10%"}}`, 0, 1, 1, DefaultHealthTimeout, "pause"},
		{"surge percent of 3", `{"Allocation":{"Size":3},"Updating":{"MaxSurge":"10%"}}`, 1, 0, 1, DefaultHealthTimeout, "pause"},
		{"quorum ignores surge", `{"Allocation":{"LogicalIDs":["a","b","c"]},"Updating":{"MaxSurge":3,"MaxUnavailable":2}}`, 0, 1, 1, DefaultHealthTimeout, "pause"},
		{"count, timeout, rollback", `{"Allocation":{"Size":2},"Updating":{"Count":3,"HealthTimeout":"0s","OnFailure":"rollback"}}`, 1, 0, 3, 0, "rollback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			s := p.Strategy()
			if s.MaxSurge != tc.surge || s.MaxUnavailable != tc.unavail || s.HealthyPolls != tc.polls || s.HealthTimeout != tc.timeout || s.OnFailure != tc.onFailure {
				t.Errorf("got %+v", s)
			}
		})
	}
}

// InspectGroups re-serialises the parsed schema with zero values (vector group.inspect-groups).
func TestInspectSerialisation(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(infrakitvectors.Dir(t), "group.inspect-groups.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Response struct {
			Result struct {
				Groups []struct {
					ID         string
					Properties json.RawMessage
				}
			}
		}
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, g := range v.Response.Result.Groups {
		p, err := Parse(g.Properties)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := compact(g.Properties)
		if string(got) != want {
			t.Errorf("group %s:\n got %s\nwant %s", g.ID, got, want)
		}
	}
}

func compact(b []byte) (string, error) {
	var v json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		return "", err
	}
	out, err := json.Marshal(v)
	return string(out), err
}

func TestIntOrPercentRoundTrip(t *testing.T) {
	p, err := Parse([]byte(`{"Allocation":{"Size":2},"Updating":{"MaxSurge":"50%","MaxUnavailable":1,"HealthTimeout":"90s","OnFailure":"rollback"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p.Updating)
	want := `{"Duration":"0s","Count":0,"SkipBeforeInstanceDestroy":null,"MaxSurge":"50%","MaxUnavailable":1,"HealthTimeout":"1m30s","OnFailure":"rollback"}`
	if string(b) != want {
		t.Errorf("got %s\nwant %s", b, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"Allocation":{"Size":2},"Instance":{"Plugin":"file","Properties":{"a":1.0}},"Flavor":{"Plugin":"vanilla"},"Updating":{"MaxSurge":"25%"}}`))
	f.Add([]byte(`{"Allocation":{"LogicalIDs":["a"]},"Updating":{"Duration":"1m","HealthTimeout":5}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Parse(doc)
		if err != nil {
			return
		}
		_ = Validate("g", p)
		_ = p.Strategy()
		if h, err := p.InstanceHash(); err == nil && len(h) != 32 {
			t.Fatalf("hash %q", h)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if _, err := Parse(b); err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
	})
}
