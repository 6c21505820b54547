package initrd

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
)

func TestVerify(t *testing.T) {
	dir := func(n string) ent { return ent{h: Header{Name: n, Mode: fstree.TypeDir | 0o755}} }
	file := func(n string) ent { return ent{h: Header{Name: n, Mode: fstree.TypeReg | 0o644}} }
	link := func(n, to string) ent { return ent{h: Header{Name: n, Mode: fstree.TypeSymlink | 0o777, Linkname: to}} }
	for _, tc := range []struct {
		name string
		ents []ent
		want string // "" for no error
		sym  bool
	}{
		{"ok", []ent{dir("a"), file("a/x"), link("b", "/etc"), link("b", "/usr"), file("a/x")}, "", false},
		{"symlink then entry below it", []ent{dir("a"), link("a/l", "/etc"), file("a/l/passwd")}, `"a/l/passwd": parent "a/l" is a symlink`, true},
		{"deep below symlink", []ent{link("l", "/"), dir("l/etc"), file("l/etc/x")}, `"l/etc": parent "l" is a symlink`, true},
		{"missing parent", []ent{file("a/x")}, `"a/x": parent "a" was not created`, false},
		{"file parent", []ent{file("a"), file("a/x")}, `parent "a" is not a directory`, false},
		{"symlink over non-empty dir", []ent{dir("a"), file("a/x"), link("a", "/etc")}, `"a" replaces a non-empty directory`, false},
		{"symlink over dir then below", []ent{dir("a"), link("a", "/etc"), file("a/x")}, `parent "a" is a symlink`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(NewReader(bytes.NewReader(writeArchive(t, tc.ents))))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if errors.Is(err, ErrThroughSymlink) != tc.sym {
				t.Fatalf("errors.Is(ErrThroughSymlink) = %v", !tc.sym)
			}
		})
	}
}
