package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func open(t *testing.T) (*Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "config")
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, root
}

func assertFile(t *testing.T, p, content string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	if string(b) != content {
		t.Errorf("%s: content %q, want %q", p, b, content)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != perm {
		t.Errorf("%s: mode %v, want %v", p, st.Mode(), perm)
	}
}

func TestProcessUserdata(t *testing.T) {
	type file struct {
		content string
		mode    fs.FileMode
	}
	tests := []struct {
		name    string
		data    string
		want    map[string]file // relative path -> content/mode; mode with ModeDir for dirs
		wantErr string          // substring of the joined skip error; "" means nil
	}{
		{
			name: "linuxkit sample",
			data: `{"ssh":{"entries":{"sshd_config":{"perm":"0600","content":"PermitRootLogin yes\nPasswordAuthentication no"}}},
			        "foo":{"entries":{"bar":{"content":"foobar"},"baz":{"perm":"0600","content":"bar"}}}}`,
			want: map[string]file{
				"ssh/sshd_config": {"PermitRootLogin yes\nPasswordAuthentication no", 0o600},
				"foo/bar":         {"foobar", 0o644},
				"foo/baz":         {"bar", 0o600},
				"ssh":             {"", fs.ModeDir | 0o755},
			},
		},
		{name: "single file", data: `{"hostname":{"content":"foobar"}}`, want: map[string]file{"hostname": {"foobar", 0o644}}},
		{name: "empty file", data: `{"empty":{"content":""}}`, want: map[string]file{"empty": {"", 0o644}}},
		{name: "empty directory", data: `{"empty":{"entries":{}}}`, want: map[string]file{"empty": {"", fs.ModeDir | 0o755}}},
		{
			name: "permissions",
			data: `{"restricted":{"perm":"0700","entries":{"password":{"perm":"0600","content":"secret"}}}}`,
			want: map[string]file{"restricted": {"", fs.ModeDir | 0o700}, "restricted/password": {"secret", 0o600}},
		},
		{
			name: "deep tree",
			data: `{"level1":{"entries":{"level2":{"entries":{"file2":{"content":"depth2"},"level3":{"entries":{"file3":{"content":"depth3"}}}}}}}}`,
			want: map[string]file{"level1/level2/file2": {"depth2", 0o644}, "level1/level2/level3/file3": {"depth3", 0o644}},
		},
		{name: "not json", data: "#!/bin/sh\necho hi\n", want: map[string]file{}},
		{name: "bad json keeps raw", data: `{"a":{"content":"x"}`, want: map[string]file{}},
		{name: "json but not an object", data: `["a","b"]`, want: map[string]file{}},
		{
			name:    "dotdot rejected, siblings kept",
			data:    `{"..":{"content":"evil"},"ok":{"content":"fine"}}`,
			want:    map[string]file{"ok": {"fine", 0o644}},
			wantErr: `".."`,
		},
		{
			name:    "nested dotdot rejected",
			data:    `{"d":{"entries":{"..":{"entries":{"..":{"content":"evil"}}},"f":{"content":"x"}}}}`,
			want:    map[string]file{"d/f": {"x", 0o644}},
			wantErr: `".."`,
		},
		{name: "slash rejected", data: `{"a/b":{"content":"x"}}`, want: map[string]file{}, wantErr: "contains '/'"},
		{name: "absolute rejected", data: `{"/etc":{"content":"x"}}`, want: map[string]file{}, wantErr: "contains '/'"},
		{name: "empty name rejected", data: `{"":{"content":"x"}}`, want: map[string]file{}, wantErr: `""`},
		{name: "dot rejected", data: `{".":{"entries":{}}}`, want: map[string]file{}, wantErr: `"."`},
		{name: "both content and entries", data: `{"x":{"content":"a","entries":{}}}`, want: map[string]file{}, wantErr: "exactly one"},
		{name: "neither content nor entries", data: `{"x":{"perm":"0644"}}`, want: map[string]file{}, wantErr: "exactly one"},
		{name: "bad perm", data: `{"x":{"perm":"rw","content":"a"},"y":{"perm":"04755","content":"b"}}`, want: map[string]file{}, wantErr: "perm"},
		{name: "userdata is reserved", data: `{"userdata":{"content":"replaced"}}`, want: map[string]file{}, wantErr: "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, root := open(t)
			err := d.ProcessUserdata([]byte(tc.data))
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			// The raw userdata is always there, byte for byte.
			assertFile(t, filepath.Join(root, "userdata"), tc.data, 0o644)
			for rel, f := range tc.want {
				p := filepath.Join(root, rel)
				if f.mode.IsDir() {
					st, err := os.Stat(p)
					if err != nil || st.Mode() != f.mode {
						t.Errorf("%s: stat %v err %v, want dir mode %v", rel, st.Mode(), err, f.mode)
					}
					continue
				}
				assertFile(t, p, f.content, f.mode)
			}
			// Nothing else was written (no temp files left, nothing unexpected).
			var got []string
			filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
				if !de.IsDir() {
					rel, _ := filepath.Rel(root, p)
					got = append(got, rel)
				}
				return nil
			})
			for _, rel := range got {
				if _, ok := tc.want[rel]; !ok && rel != "userdata" {
					t.Errorf("unexpected file %s", rel)
				}
			}
			// Nothing escaped into the parent directory.
			entries, _ := os.ReadDir(filepath.Dir(root))
			if len(entries) != 1 {
				t.Errorf("parent of root holds %d entries, want only the root", len(entries))
			}
		})
	}
}

func TestSymlinkEscapeBlocked(t *testing.T) {
	d, root := open(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink planted in the root (relative and absolute) must not be followed out of it.
	if err := os.Symlink("../outside", filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	err := d.ProcessUserdata([]byte(`{"rel":{"entries":{"f":{"content":"x"}}},"abs":{"entries":{"g":{"content":"y"}}}}`))
	if err == nil {
		t.Fatal("expected the escaping entries to be reported")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("write escaped the root: %v", entries)
	}
	if err := d.WriteFile("rel/f", []byte("x"), 0o644); err == nil {
		t.Fatal("WriteFile through an escaping symlink succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("write escaped the root: %v", entries)
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	d, root := open(t)
	if err := d.WriteFile("ssh/authorized_keys", []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile("ssh/authorized_keys", []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(root, "ssh", "authorized_keys"), "two", 0o600)
	entries, _ := os.ReadDir(filepath.Join(root, "ssh"))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	for _, bad := range []string{"", "/abs", "a/../b", "a//b", "."} {
		if err := d.WriteFile(bad, nil, 0o644); !errors.Is(err, ErrBadName) {
			t.Errorf("WriteFile(%q) = %v, want ErrBadName", bad, err)
		}
	}
}

func TestSerialization(t *testing.T) {
	s := func(v string) *string { return &v }
	b, err := json.Marshal(File{
		"ssh": {Entries: map[string]Entry{"sshd_config": {Content: s("PermitRootLogin yes"), Perm: "0600"}}},
		"foo": {Entries: map[string]Entry{"bar": {Content: s("foobar")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"foo":{"entries":{"bar":{"content":"foobar"}}},"ssh":{"entries":{"sshd_config":{"perm":"0600","content":"PermitRootLogin yes"}}}}`
	if string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
}

// FuzzExpand feeds arbitrary documents to ProcessUserdata inside a root that has an escaping
// symlink planted in it, and checks that nothing is ever written outside the root, that the
// raw userdata is always kept, and that every file written has permission bits only.
func FuzzExpand(f *testing.F) {
	for _, seed := range []string{
		`{"a":{"content":"x"}}`,
		`{"..":{"content":"x"}}`,
		`{"d":{"entries":{"..":{"entries":{"..":{"content":"x"}}}}}}`,
		`{"link":{"entries":{"f":{"content":"x"}}}}`,
		`{"a/../../b":{"content":"x"}}`,
		`{"x":{"perm":"7777","content":"x"}}`,
		`{"x":{"perm":"0000","entries":{"y":{"content":"z"}}}}`,
		`{"userdata":{"content":"x"}}`,
		`{"":{"entries":{"":{"content":"x"}}}}`,
		`not json`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		outside := filepath.Join(parent, "outside")
		if err := os.Mkdir(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		d, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := os.Symlink("../outside", filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
		_ = d.ProcessUserdata(data) // skipped entries are fine; escapes are not

		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Fatalf("write escaped through a symlink: %v", entries)
		}
		entries, _ := os.ReadDir(parent)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"outside", "root"}) {
			t.Fatalf("write escaped into the parent: %v", names)
		}
		raw, err := os.ReadFile(filepath.Join(root, "userdata"))
		if err != nil || string(raw) != string(data) {
			t.Fatalf("raw userdata not kept: %v", err)
		}
		filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return nil // a 0000 directory may be unreadable as non-root
			}
			info, err := de.Info()
			if err == nil && info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s has special bits %v", p, info.Mode())
			}
			if strings.Contains(de.Name(), ".tmp") {
				t.Errorf("temporary file left: %s", p)
			}
			return nil
		})
	})
}
