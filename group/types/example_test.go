package types_test

import (
	"fmt"

	"github.com/mobykit/mobykit/group/types"
)

// The recorded "workers" group of the InfraKit vectors: mobykit tags its members with the
// same hash a real InfraKit does.
func ExampleProperties_InstanceHash() {
	p, err := types.Parse([]byte(`{
	  "Allocation": {"Size": 2},
	  "Instance": {"Plugin": "file", "Properties": {"note": "v1"}},
	  "Flavor": {"Plugin": "vanilla", "Properties": {"Init": ["echo hello"], "Tags": {"tier": "web"}}}
	}`))
	if err != nil {
		panic(err)
	}
	h, err := p.InstanceHash()
	if err != nil {
		panic(err)
	}
	fmt.Println(h)
	// Output: xnhzyp5zgt5xgyeu47ajojm6ezgxnxv5
}
