package spec

import (
	"os"
	"testing"
)

func BenchmarkParseValidate(b *testing.B) {
	data, err := os.ReadFile("testdata/full.yml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		m, err := Parse("full.yml", data)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
