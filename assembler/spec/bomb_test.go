package spec

import (
	"fmt"
	"strings"
	"testing"
)

// Aliases let a small document expand to a huge one; the decoder stops
// after maxNodes instead of expanding without bound.
func TestAliasExpansionBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n  - {name: s0, image: b, env: &e [" + strings.Repeat("\"v\",", 2000) + "\"v\"]}\n")
	for i := 1; i < 200; i++ {
		fmt.Fprintf(&b, "  - {name: s%d, image: b, env: *e}\n", i)
	}
	_, err := Parse("bomb.yml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too many alias expansions") {
		t.Fatalf("err = %v", err)
	}
}
