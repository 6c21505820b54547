package spec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestFileEntries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key.pub"), []byte("ssh-ed25519 AAAA"), 0o600); err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(dir, "s.yml")
	y := `
services:
  - name: sshd
    image: linuxkit/sshd
files:
  - path: /etc/ssh/keys/authorized_keys
    source: key.pub
    mode: "0640"
    uid: sshd
    gid: 5
  - path: etc/ssh/sshd_config.d
    directory: true
  - path: etc/localtime
    symlink: /usr/share/zoneinfo/UTC
  - path: etc/motd
    contents: "hi\n"
  - path: etc/missing
    source: nope.conf
    optional: true
  - path: etc/spec.yml
    metadata: yaml
`
	m, err := Parse(specPath, []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := m.FileEntries("/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, e := range got {
		kind := "file " + string(e.Contents)
		switch {
		case e.Directory && e.Implicit:
			kind = "implicit dir"
		case e.Directory:
			kind = "dir"
		case e.Symlink != "":
			kind = "symlink " + e.Symlink
		}
		if strings.HasSuffix(e.Path, "spec.yml") {
			kind = "metadata"
			again, err := Parse("meta", e.Contents)
			if err != nil || again.Services[0].Name != "sshd" {
				t.Errorf("metadata file is not the spec: %v\n%s", err, e.Contents)
			}
		}
		summary = append(summary, e.Path+" "+octal(e.Mode)+" "+itoa(e.UID)+":"+itoa(e.GID)+" "+kind)
	}
	want := []string{
		"etc 0750 100:5 implicit dir",
		"etc/ssh 0750 100:5 implicit dir",
		"etc/ssh/keys 0750 100:5 implicit dir",
		"etc/ssh/keys/authorized_keys 0640 100:5 file ssh-ed25519 AAAA",
		"etc/ssh/sshd_config.d 0700 0:0 dir",
		"etc/localtime 0600 0:0 symlink /usr/share/zoneinfo/UTC",
		"etc/motd 0600 0:0 file hi\n",
		"etc/spec.yml 0600 0:0 metadata",
	}
	if !reflect.DeepEqual(summary, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(summary, "\n"), strings.Join(want, "\n"))
	}
	if got[3].Origin != specPath+":6: files[0]" {
		t.Errorf("origin = %q", got[3].Origin)
	}
}

func TestFileEntriesSourceRelativeToBaseDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Built in code, not parsed: the source is relative to baseDir.
	m := &Moby{Files: []File{{Path: "x", Source: "x"}}}
	got, err := m.FileEntries(dir)
	if err != nil || len(got) != 1 || string(got[0].Contents) != "x" {
		t.Fatalf("FileEntries = %+v, %v", got, err)
	}
}

func TestFileEntriesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    File
		want string
	}{
		{"escape", File{Path: "a/../../b", Contents: new(string)}, `must not contain '..'`},
		{"root", File{Path: "/", Directory: true}, `names the image root`},
		{"missing source", File{Path: "a", Source: "/nonexistent/mobykit"}, `source /nonexistent/mobykit: stat`},
		{"nothing", File{Path: "a"}, `not specified`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Moby{Files: []File{tc.f}}
			_, err := m.FileEntries(t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func octal(m uint32) string {
	s := ""
	for i := 0; i < 4; i++ {
		s = string(rune('0'+m&7)) + s
		m >>= 3
	}
	return s
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	s := ""
	for v > 0 {
		s = string(rune('0'+v%10)) + s
		v /= 10
	}
	return s
}
