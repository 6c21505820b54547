package spec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
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

var tooBig = fmt.Sprintf("spec expands to more than %d MB", MaxSpecBytes>>20)

// allocated returns how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A 1.4 MB spec whose 1 MiB string is used 100,000 times stands for
// 100 GB of environment. Parse refuses it from the node tree, allocating
// a small multiple of the file, never the expansion.
func TestAliasBombRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n  - name: bomb\n    image: busybox\n    env: [&big \"")
	b.WriteString(strings.Repeat("x", 1<<20))
	b.WriteString("\"")
	b.WriteString(strings.Repeat(",*big", 100_000))
	b.WriteString("]\n")
	data := []byte(b.String())

	var err error
	alloc := allocated(func() { _, err = Parse("bomb.yml", data) })
	want := "bomb.yml: " + tooBig
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %T is not a *spec.Error", err)
	}
	// The expansion is 100,000 MiB; the parse may cost a few times the file.
	if limit := uint64(64 << 20); alloc > limit {
		t.Errorf("Parse allocated %d MB for a %d MB file (limit %d MB)", alloc>>20, len(data)>>20, limit>>20)
	}
}

// Ten levels of ten aliases each: 10^10 strings from under 1 KB.
func TestBillionLaughsRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n  - name: lol\n    image: busybox\n    annotations:\n")
	b.WriteString("      l0: &l0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "      l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d,", i-1), 10), ","))
	}
	var err error
	alloc := allocated(func() { _, err = Parse("lol.yml", []byte(b.String())) })
	if want := "lol.yml: " + tooBig; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if alloc > 16<<20 {
		t.Errorf("Parse allocated %d MB for a %d byte file", alloc>>20, b.Len())
	}
}

// An alias inside its own anchor expands forever.
func TestSelfAliasRefused(t *testing.T) {
	_, err := Parse("self.yml", []byte("services: &s [{name: a, image: b, env: *s}]\n"))
	if want := "self.yml: " + tooBig; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// A 200 MB scalar is refused by the size cap after reading MaxSpecBytes,
// not parsed (it took 53 s and 1.5 GB).
func TestHugeScalarRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.yml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("kernel: {cmdline: \""); err != nil {
		t.Fatal(err)
	}
	// sparse: 200 MB of NULs inside the string, without writing them
	if err := f.Truncate(200 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var lerr error
	alloc := allocated(func() { _, lerr = Load(p) })
	if want := fmt.Sprintf("%s: spec is larger than %d MB", p, MaxSpecBytes>>20); lerr == nil || lerr.Error() != want {
		t.Fatalf("err = %v, want %q", lerr, want)
	}
	if limit := uint64(3 * MaxSpecBytes); alloc > limit {
		t.Errorf("Load allocated %d MB (limit %d MB)", alloc>>20, limit>>20)
	}

	// The same through a reader: no more than the cap is consumed.
	r := &countingReader{r: io.MultiReader(strings.NewReader("kernel: {cmdline: \""), infiniteX{})}
	if _, err := Read("stream.yml", r); err == nil || err.Error() != "stream.yml: spec is larger than 16 MB" {
		t.Fatalf("err = %v", err)
	}
	if r.n > MaxSpecBytes+1 {
		t.Errorf("read %d bytes, cap is %d", r.n, MaxSpecBytes)
	}

	// Parse given the bytes refuses them too.
	big := make([]byte, MaxSpecBytes+1)
	if _, err := Parse("big.yml", big); err == nil || err.Error() != "big.yml: spec is larger than 16 MB" {
		t.Fatalf("err = %v", err)
	}
}

type infiniteX struct{}

func (infiniteX) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Ordinary aliases (a shared env, a repeated service) still work, and a
// spec just under the budget parses.
func TestFewAliasesAccepted(t *testing.T) {
	y := `
services:
  - &svc
    name: a
    image: busybox
    env: &env ["A=1", "B=2"]
  - name: b
    image: busybox
    env: *env
onshutdown:
  - *svc
`
	m, err := Parse("ok.yml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := *m.Services[1].Env; len(got) != 2 || got[1] != "B=2" {
		t.Errorf("env = %q", got)
	}
	if m.Onshutdown[0].Name != "a" {
		t.Errorf("onshutdown = %+v", m.Onshutdown[0])
	}

	// 4 MiB of contents used three times: 12 MiB, under the budget.
	big := strings.Repeat("y", 4<<20)
	y = "files:\n  - {path: a, contents: &c \"" + big + "\"}\n  - {path: b, contents: *c}\n  - {path: c, contents: *c}\n"
	m, err = Parse("big.yml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 3 || len(*m.Files[2].Contents) != 4<<20 {
		t.Errorf("files = %d", len(m.Files))
	}
}

// ParseLabel reads image labels, which come from registries: the same
// budget applies.
func TestLabelAliasBombRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("env: [&big \"" + strings.Repeat("x", 1<<20) + "\"" + strings.Repeat(",*big", 20) + "]\n")
	_, err := ParseLabel("image x label", []byte(b.String()))
	if want := "image x label: " + tooBig; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}
