package vanilla

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mobykit/mobykit/internal/infrakitvectors"
	"github.com/mobykit/mobykit/spi"
)

func vector(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(infrakitvectors.Dir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestPrepareVectors feeds the recorded Prepare requests to the flavor and expects InfraKit's
// vanilla output.
func TestPrepareVectors(t *testing.T) {
	for _, name := range []string{"flavor.prepare.json", "flavor.prepare.logical-id.json"} {
		t.Run(name, func(t *testing.T) {
			var x struct {
				Request struct {
					Params struct {
						Properties spi.Any
						Spec       spi.Spec
						Allocation spi.Allocation
						Index      spi.Index
					}
				}
				Response struct{ Result struct{ Spec spi.Spec } }
			}
			vector(t, name, &x)
			p := x.Request.Params
			if err := (Flavor{}).Validate(context.Background(), p.Properties, p.Allocation); err != nil {
				t.Fatal(err)
			}
			got, err := Flavor{}.Prepare(context.Background(), p.Properties, p.Spec, p.Allocation, p.Index)
			if err != nil {
				t.Fatal(err)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(x.Response.Result.Spec)
			if string(gb) != string(wb) {
				t.Errorf("got  %s\nwant %s", gb, wb)
			}
		})
	}
}

func TestValidateErrorVector(t *testing.T) {
	var x struct {
		Request  struct{ Params struct{ Properties spi.Any } }
		Response struct{ Error struct{ Message string } }
	}
	vector(t, "error.flavor.validate.json", &x)
	err := Flavor{}.Validate(context.Background(), x.Request.Params.Properties, spi.Allocation{Size: 1})
	if err == nil || err.Error() != x.Response.Error.Message {
		t.Fatalf("got %v, want %q", err, x.Response.Error.Message)
	}
}

func TestPrepareMerges(t *testing.T) {
	in := spi.Spec{Init: "first", Tags: map[string]string{"infrakit.group": "g", "a": "1"}, Attachments: []spi.Attachment{{ID: "v1", Type: "disk"}}}
	props := spi.Any(`{"Init":["second","third"],"Tags":{"a":"2","b":"3"},"Attachments":[{"ID":"n1","Type":"net"}]}`)
	got, err := Flavor{}.Prepare(context.Background(), props, in, spi.Allocation{}, spi.Index{})
	if err != nil {
		t.Fatal(err)
	}
	want := spi.Spec{Init: "first\nsecond\nthird", Tags: map[string]string{"infrakit.group": "g", "a": "2", "b": "3"},
		Attachments: []spi.Attachment{{ID: "v1", Type: "disk"}, {ID: "n1", Type: "net"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if in.Tags["a"] != "1" {
		t.Error("input tags modified")
	}
	s, err := Flavor{}.Prepare(context.Background(), spi.Any(`{"InitScriptTemplateURL":"str://echo x"}`), spi.Spec{}, spi.Allocation{}, spi.Index{})
	if err != nil || s.Init != "echo x" {
		t.Fatalf("template url: %q %v", s.Init, err)
	}
	if err := (Flavor{}).Validate(context.Background(), spi.Any(`{"InitScriptTemplateURL":"http://x"}`), spi.Allocation{}); err == nil {
		t.Fatal("http:// template URL accepted")
	}
	if err := (Flavor{}).Validate(context.Background(), spi.Any(`{"Init":"notalist"}`), spi.Allocation{}); err == nil {
		t.Fatal("malformed properties accepted")
	}
}
