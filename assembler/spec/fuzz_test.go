package spec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that the parser never panics, that every error is a
// positioned *Error, and that whatever it accepts survives a round trip
// through Bytes.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yml")
	more, _ := filepath.Glob("testdata/linuxkit/*.yml")
	seeds = append(seeds, more...)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "kernel: {image: k}", "services: [{name: a, image: b, uid: 1}]",
		"a: &a [*a]", "services:\n  - &x {name: a, image: b}\n  - *x\n",
		"files: [{path: /etc/x, contents: y, mode: '0644'}]",
		"services: [{name: a, image: b, resources: {memory: {limit: 99999999999999999999}}}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz.yml", data)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *spec.Error: %v", err, err)
			}
			return
		}
		_ = m.Validate()
		_ = m.ImageRefs()
		out, err := m.Bytes()
		if err != nil {
			t.Fatalf("Bytes: %v", err)
		}
		again, err := Parse("again.yml", out)
		if err != nil {
			t.Fatalf("Bytes output does not parse: %v\n%s", err, out)
		}
		out2, err := again.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("round trip not stable:\n%s\n---\n%s", out, out2)
		}
	})
}
