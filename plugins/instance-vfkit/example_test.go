package instancevfkit

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/spi"
)

type groupDoc struct {
	ID         string
	Properties struct {
		Allocation, Updating, Flavor json.RawMessage
		Instance                     struct {
			Plugin     string
			Properties spi.Any
		}
	}
}

func readGroup(t *testing.T, path string) groupDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g groupDoc
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return g
}

// TestLocalClusterExampleOnVfkit: the local cluster example's vfkit group file names
// instance-vfkit, its Instance Properties pass the plugin's Validate, and everything else
// (ID, allocation, update policy, flavor) is the QEMU group file's, so the two stay one
// example. The QEMU file with only the plugin name swapped is refused, naming the key vfkit
// cannot honour (publish: a NAT address is reached directly, there is nothing to forward).
func TestLocalClusterExampleOnVfkit(t *testing.T) {
	const dir = "../../examples/clusters/local/"
	v, q := readGroup(t, dir+"group-vfkit.json"), readGroup(t, dir+"group.json")
	if v.Properties.Instance.Plugin != "instance-vfkit" {
		t.Fatalf("group-vfkit.json: Instance.Plugin = %q", v.Properties.Instance.Plugin)
	}
	if err := (&backend{}).Validate(v.Properties.Instance.Properties); err != nil {
		t.Fatalf("group-vfkit.json: %v", err)
	}
	if v.ID != q.ID || !jsonEqual(v.Properties.Allocation, q.Properties.Allocation) ||
		!jsonEqual(v.Properties.Updating, q.Properties.Updating) || !jsonEqual(v.Properties.Flavor, q.Properties.Flavor) {
		t.Fatal("group-vfkit.json and group.json differ outside the Instance section")
	}
	err := (&backend{}).Validate(q.Properties.Instance.Properties)
	if err == nil || !strings.Contains(err.Error(), `"publish"`) {
		t.Fatalf("group.json's instance-qemu Properties under instance-vfkit: %v", err)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return false
	}
	return x.String() == y.String()
}
