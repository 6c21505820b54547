package spec

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sourceSpec parses a spec in dir whose only files: entry has source src.
func sourceSpec(t *testing.T, dir, src string) (*Moby, string) {
	t.Helper()
	p := filepath.Join(dir, "s.yml")
	m, err := Parse(p, []byte("files:\n  - path: etc/x\n    source: "+src+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m, p
}

// fileEntries runs FileEntries, failing the test if it has not returned
// after a minute (a FIFO without a writer blocks open and read forever).
func fileEntries(t *testing.T, m *Moby) ([]FileEntry, error) {
	t.Helper()
	type result struct {
		e   []FileEntry
		err error
	}
	ch := make(chan result, 1)
	go func() {
		e, err := m.FileEntries("")
		ch <- result{e, err}
	}()
	select {
	case r := <-ch:
		return r.e, r.err
	case <-time.After(time.Minute):
		t.Fatal("FileEntries hung")
		return nil, nil
	}
}

func wantSourceRefused(t *testing.T, err error, specPath, src, kind string) {
	t.Helper()
	want := specPath + ":2:5: files[0]: source " + src + ": is " + kind + ", not a regular file"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

// /dev/zero is endless: reading it ran the build out of memory. It is
// refused from its mode, before it is opened (opening some devices, such
// as a watchdog, acts), directly or through a symlink.
func TestFilesSourceDevZeroRefused(t *testing.T) {
	dir := t.TempDir()
	m, p := sourceSpec(t, dir, "/dev/zero")
	_, err := fileEntries(t, m)
	wantSourceRefused(t, err, p, "/dev/zero", "a character device")

	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero")); err != nil {
		t.Fatal(err)
	}
	m, p = sourceSpec(t, dir, "zero")
	_, err = fileEntries(t, m)
	wantSourceRefused(t, err, p, "zero", "a character device")

	// optional skips what is missing, not what is hostile
	m.Files[0].Optional = true
	_, err = fileEntries(t, m)
	wantSourceRefused(t, err, p, "zero", "a character device")
}

// A FIFO with no writer blocked the build forever.
func TestFilesSourceFIFORefused(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, p := sourceSpec(t, dir, "fifo")
	_, err := fileEntries(t, m)
	wantSourceRefused(t, err, p, "fifo", "a FIFO")
}

func TestFilesSourceSocketRefused(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m, p := sourceSpec(t, dir, "sock")
	_, err = fileEntries(t, m)
	wantSourceRefused(t, err, p, "sock", "a socket")
}

// A folder is refused as LinuxKit refuses it (it reads the source as one
// file): nothing below it is walked, so nothing there is followed.
func TestFilesSourceFolderRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	m, p := sourceSpec(t, dir, "d")
	_, err := fileEntries(t, m)
	wantSourceRefused(t, err, p, "d", "a folder (use directory: true for an empty one)")
}

// The FIFO race: the path is a regular file when checked and a FIFO when
// opened. openSource opens without blocking and checks the opened file.
func TestFilesSourceSwappedForFIFORefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := readOpened(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is a FIFO, not a regular file") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("reading an opened FIFO hung")
	}
}

// A symlink to a regular file is read (LinuxKit follows it too); the size
// read is bounded.
func TestFilesSourceSymlinkAndSize(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "real"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	m, _ := sourceSpec(t, dir, "link")
	e, err := fileEntries(t, m)
	if err != nil || len(e) != 2 || string(e[1].Contents) != "hello" {
		t.Fatalf("entries = %+v, %v", e, err)
	}

	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxSourceBytes + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	m, p := sourceSpec(t, dir, "big")
	_, err = fileEntries(t, m)
	want := p + ":2:5: files[0]: source big: larger than 256 MB"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

// files: entries are held in memory while the image is written: their
// total is bounded too (here lowered to 1 MB; 1 GB in a build).
func TestFilesTotalBounded(t *testing.T) {
	defer func(old int64) { maxFilesBytes = old }(maxFilesBytes)
	maxFilesBytes = 1 << 20
	half := strings.Repeat("x", 600<<10)
	m, err := Parse("t.yml", []byte("files:\n  - {path: a, contents: &h \""+half+"\"}\n  - {path: b, contents: *h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.FileEntries("")
	if want := "t.yml:3:5: files[1]: the files: entries up to this one add up to more than 1 MB"; err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}
