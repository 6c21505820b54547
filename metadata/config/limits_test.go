package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// countEntries counts the files and directories under root other than the raw userdata.
func countEntries(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if p != root && p != filepath.Join(root, UserdataFile) {
			n++
		}
		return nil
	})
	return n
}

// flat is a userdata document of n files.
func flat(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"f%d":{"content":"x"}`, i)
	}
	b.WriteString("}")
	return b.String()
}

// nested is a userdata document of a chain of levels directories, the last holding a file.
func nested(levels int) string {
	doc := `{"content":"deep"}`
	for i := 0; i < levels-1; i++ {
		doc = `{"entries":{"d":` + doc + `}}`
	}
	return `{"d":` + doc + `}`
}

// TestUserdataTooManyEntriesRefused: a small userdata document of very many tiny entries
// (each one file in /run/config, on tmpfs, in the guest's memory) is not expanded at all; the
// raw userdata is kept and the error says why.
func TestUserdataTooManyEntriesRefused(t *testing.T) {
	d, root := open(t)
	err := d.ProcessUserdata([]byte(flat(MaxEntries + 1)))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d entries", MaxEntries)) {
		t.Errorf("ProcessUserdata: %v", err)
	}
	if n := countEntries(t, root); n != 0 {
		t.Errorf("%d entries written", n)
	}
	if st, err := os.Stat(filepath.Join(root, UserdataFile)); err != nil || st.Size() == 0 {
		t.Errorf("raw userdata not kept: %v", err)
	}

	// At the limit, everything is written.
	d, root = open(t)
	if err := d.ProcessUserdata([]byte(flat(MaxEntries))); err != nil {
		t.Fatal(err)
	}
	if n := countEntries(t, root); n != MaxEntries {
		t.Errorf("%d entries written, want %d", n, MaxEntries)
	}
}

// TestUserdataTooDeepRefused: entries nested deeper than MaxDepth are refused before decoding.
func TestUserdataTooDeepRefused(t *testing.T) {
	d, root := open(t)
	err := d.ProcessUserdata([]byte(nested(MaxDepth + 1)))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("deeper than %d levels", MaxDepth)) {
		t.Errorf("ProcessUserdata: %v", err)
	}
	if n := countEntries(t, root); n != 0 {
		t.Errorf("%d entries written", n)
	}

	d, root = open(t)
	if err := d.ProcessUserdata([]byte(nested(MaxDepth))); err != nil {
		t.Fatal(err)
	}
	if n := countEntries(t, root); n != MaxDepth {
		t.Errorf("%d entries written, want %d", n, MaxDepth)
	}
}

// TestExpandBounded: Expand, called directly with a File, holds to the same limits: entries
// past MaxEntries, levels past MaxDepth and content past MaxData bytes are skipped and
// reported.
func TestExpandBounded(t *testing.T) {
	s := func(v string) *string { return &v }
	many := File{}
	for i := 0; i < MaxEntries+5; i++ {
		many[fmt.Sprintf("f%05d", i)] = Entry{Content: s("x")}
	}
	d, root := open(t)
	if err := d.Expand(many); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("f%05d: more than %d entries", MaxEntries, MaxEntries)) {
		t.Errorf("Expand(many): %v", err)
	}
	if n := countEntries(t, root); n != MaxEntries {
		t.Errorf("%d entries written, want %d", n, MaxEntries)
	}

	deep := Entry{Content: s("deep")}
	for i := 0; i < MaxDepth; i++ {
		deep = Entry{Entries: map[string]Entry{"d": deep}}
	}
	d, _ = open(t)
	if err := d.Expand(File{"d": deep}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("deeper than %d levels", MaxDepth)) {
		t.Errorf("Expand(deep): %v", err)
	}

	half := strings.Repeat("x", MaxData/2+1)
	d, root = open(t)
	if err := d.Expand(File{"a": {Content: &half}, "b": {Content: &half}}); err == nil || !strings.Contains(err.Error(), "entry b: content past") {
		t.Errorf("Expand(big): %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "b")); err == nil {
		t.Error("b written past the content limit")
	}
}
