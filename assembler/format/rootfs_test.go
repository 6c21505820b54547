package format

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
)

// rootFSSegments writes two gzip cpio segments holding every kind of entry and the tree's
// edges: the root's own entry, a file the second segment replaces, a folder it replaces by a
// symlink, an entry whose folder is missing, a hard link of three names one of which a later
// segment replaces, a big and a multi-block file, a folder of 3000 entries, names of 255
// bytes, deep nesting, devices with large minors, a fifo, a socket and owners above 65535.
func rootFSSegments(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	rnd := rand.New(rand.NewPCG(3, 4))
	rb := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	var segs []string
	seg := func(i int, fill func(put func(h initrd.Header, data []byte))) {
		p := filepath.Join(dir, fmt.Sprintf("seg%d.gz", i))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zw, err := initrd.Compress(f, initrd.Compression("gzip"))
		if err != nil {
			t.Fatal(err)
		}
		w := initrd.NewWriter(zw, initrd.WithMTime(int64(1000+i)))
		fill(func(h initrd.Header, data []byte) {
			if err := w.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
		})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, p)
	}
	const dir755, reg = fstree.TypeDir | 0o755, fstree.TypeReg
	seg(0, func(put func(initrd.Header, []byte)) {
		put(initrd.Header{Name: ".", Mode: fstree.TypeDir | 0o711, UID: 5, GID: 6}, nil)
		for _, d := range []string{"etc", "dev", "many", "long", "deep", "gone", "gone/sub", "usr", "usr/bin"} {
			put(initrd.Header{Name: d, Mode: dir755}, nil)
		}
		put(initrd.Header{Name: "etc/hosts", Mode: reg | 0o644, Size: 20}, []byte("127.0.0.1 localhost\n"))
		big := rb(3*4096 + 1234)
		copy(big[4096:], strings.Repeat("compressible ", 300))
		put(initrd.Header{Name: "usr/bin/big", Mode: reg | 0o755, Size: int64(len(big))}, big)
		huge := append(rb(300<<10), make([]byte, 200<<10)...)
		put(initrd.Header{Name: "usr/bin/huge", Mode: reg | 0o755, Size: int64(len(huge))}, huge)
		put(initrd.Header{Name: "usr/bin/empty", Mode: reg | 0o644}, nil)
		put(initrd.Header{Name: "usr/bin/a", Mode: reg | 0o755, Ino: 900, NLink: 3, Size: 5}, []byte("aaaaa"))
		put(initrd.Header{Name: "usr/bin/b", Mode: reg | 0o755, Ino: 900, NLink: 3}, nil)
		put(initrd.Header{Name: "etc/c", Mode: reg | 0o755, Ino: 900, NLink: 3}, nil)
		put(initrd.Header{Name: "etc/sym", Mode: fstree.TypeSymlink | 0o777, Linkname: "/usr/bin/a"}, nil)
		put(initrd.Header{Name: "etc/longsym", Mode: fstree.TypeSymlink | 0o777, Linkname: strings.Repeat("p/", 2047) + "q"}, nil)
		put(initrd.Header{Name: "etc/owned", Mode: reg | 0o640, UID: 100000, GID: 70000, Size: 3}, []byte("own"))
		put(initrd.Header{Name: "dev/null", Mode: fstree.TypeChar | 0o666, DevMajor: 1, DevMinor: 3}, nil)
		put(initrd.Header{Name: "dev/sda", Mode: fstree.TypeBlock | 0o660, DevMajor: 8, DevMinor: 3}, nil)
		put(initrd.Header{Name: "dev/big", Mode: fstree.TypeChar | 0o600, DevMajor: 250, DevMinor: 70000}, nil)
		put(initrd.Header{Name: "dev/fifo", Mode: fstree.TypeFifo | 0o600}, nil)
		put(initrd.Header{Name: "dev/sock", Mode: fstree.TypeSocket | 0o600}, nil)
		for i := range 3000 {
			put(initrd.Header{Name: fmt.Sprintf("many/file-%04d-with-a-longish-name", i), Mode: reg | 0o600, UID: uint32(i % 7), Size: int64(i % 3)}, rb(i%3))
		}
		for i := range 40 {
			put(initrd.Header{Name: "long/" + strings.Repeat(string(rune('a'+i%26)), 250) + fmt.Sprintf("%05d", i), Mode: fstree.TypeSymlink | 0o777, Linkname: "x"}, nil)
		}
		p := "deep"
		for range 40 {
			p += "/d"
			put(initrd.Header{Name: p, Mode: dir755}, nil)
		}
		put(initrd.Header{Name: p + "/bottom", Mode: reg | 0o644, Size: 3}, []byte("bot"))
		put(initrd.Header{Name: "gone/sub/x", Mode: reg | 0o644, Size: 1}, []byte("x"))
		put(initrd.Header{Name: "replaced", Mode: reg | 0o644, Size: 4}, []byte("old\n"))
	})
	seg(1, func(put func(initrd.Header, []byte)) {
		put(initrd.Header{Name: "etc", Mode: fstree.TypeDir | 0o700, UID: 1}, nil)
		put(initrd.Header{Name: "replaced", Mode: reg | 0o600, Size: 4}, []byte("new\n"))
		put(initrd.Header{Name: "gone", Mode: fstree.TypeSymlink | 0o777, Linkname: "etc"}, nil)
		put(initrd.Header{Name: "orphan/x", Mode: reg | 0o644, Size: 1}, []byte("o"))
		put(initrd.Header{Name: "usr/bin/b", Mode: reg | 0o755, Size: 2}, []byte("bb"))
		put(initrd.Header{Name: "many/file-0001-with-a-longish-name", Mode: fstree.TypeFifo | 0o600}, nil)
	})
	return segs
}

// TestRootFSDigests pins the bytes of the root file system formats (squashfs, erofs, iso) of
// rootFSSegments, and of its second segment alone (no entry for the root: its mode and time
// are the defaults), with build times at 0, today, past 32 bits and before the epoch: a change
// that moves a single byte shows here. The images were the same before and after squashfs and
// erofs moved to one fstree (and the tree read from the segments stopped being copied). If a
// change of layout is meant, put the new digests here and say why. The squashfs digests also
// depend on what Go's compress/flate writes.
func TestRootFSDigests(t *testing.T) {
	segs := rootFSSegments(t)
	want := map[string]string{
		"0 squashfs":                       "febd1e8b1d5102afb1912211127cfa805196312d6f21510ffc016092b9d6d363",
		"0 erofs":                          "47027c0c77eaeddadcd478e3cf3dedf17ef9ee27c9b2807c8e562c8a6e6d4f13",
		"0 iso":                            "2a5fa0a1e488997d04642fcbc5f0095650e1a898a915d7273669d0ff731cbd6e",
		"1700000000 squashfs":              "66990685d6ec7a490cdd24caf45ec1ac7710f7665a2101d732e564ca33cefad0",
		"1700000000 erofs":                 "b0c5fb61fd5d7526fc96a7e447f5ff5302cedc9e082503d0b56fa429c108cdfb",
		"1700000000 iso":                   "804b29d719e32252afa19e0bf0eb25eb2eb58f766f3a49c17d314b37bcc6197c",
		"8589934592 squashfs":              "febd1e8b1d5102afb1912211127cfa805196312d6f21510ffc016092b9d6d363",
		"8589934592 erofs":                 "e31ae1be82ad50e6904603c5911207e793465f68839c7f3a00bd2d5f6c2ebcd7",
		"8589934592 iso":                   "8cbb0f5bca1fc9f8588f64104fca72a5ed7235a4a3f5198c00b05028769850af",
		"-5 squashfs":                      "75e47a045578afb758239cb5fa3b3ba2f5268b64eca065ea4a92314bdb734aa0",
		"-5 erofs":                         "57532281669f19f9b28a631bccd8e685029b33d461bd5bd202b66ddf77a97c9e",
		"-5 iso":                           "73f626fed9d7362d3a46ece13aa28b813c78d7a41997dd63f5e7947ab497d6cd",
		"second only, 0 erofs":             "cf24b9db1979c81ce1264a063fc3518895109456d84cc0626f57019fd17089dc",
		"second only, 0 iso":               "a400127e774424d71a6b44bd44a5d650837b2033ebf27d033e511de2d67effe9",
		"second only, 0 squashfs":          "1ac8009c9be129fb3ad04f26dca2b17f4681b8d97e8abcb4ddcb6d0d1b8519b7",
		"second only, 1700000000 erofs":    "30517ca116dfd2fb591bc587d645993ff87f230dc0bf3291cfca22e15239fa14",
		"second only, 1700000000 iso":      "f8dbd29bfead0eef651c73f27dd9f2dcfcd00b9d8434ef374e3cbe38ae18f50b",
		"second only, 1700000000 squashfs": "5113911b17024b2ea360d9beb08d57e718bafceb021955d487551914ba03948b",
		"second only, 8589934592 erofs":    "2ce3c9aac7c8255ffd13c67cf6bd0f50f575309365f83e449e7c1c77d26c8589",
		"second only, 8589934592 iso":      "c5d4af3e15745366e86de0e13861ee762583e92cf6abf993f17f8739f5dd27e5",
		"second only, 8589934592 squashfs": "1ac8009c9be129fb3ad04f26dca2b17f4681b8d97e8abcb4ddcb6d0d1b8519b7",
		"second only, -5 erofs":            "d8518f9a56b1edec93f2d28100f503beec3157f9bf1c420ca380ba63d7392798",
		"second only, -5 iso":              "87284de21d753637be50f6255fc38880b4557b873f56d7dddcddc54ad66eefd4",
		"second only, -5 squashfs":         "b60005b13c342c0680bf8cfa96c89d8be04f65709454e80c91b3c6e239ccfe7d",
	}
	for _, mt := range []int64{0, 1700000000, 1 << 33, -5} {
		for i, in := range []*Input{
			{Dir: t.TempDir(), Segments: segs, MTime: mt},
			{Dir: t.TempDir(), Segments: segs[1:], MTime: mt},
		} {
			for _, f := range []struct {
				name  string
				write func(context.Context, *Input, io.Writer) error
			}{{"squashfs", StreamSquashFS}, {"erofs", StreamEROFS}, {"iso", StreamRootISO}} {
				key := fmt.Sprintf("%d %s", mt, f.name)
				if i == 1 {
					key = "second only, " + key
				}
				h := sha256.New()
				if err := f.write(context.Background(), in, h); err != nil {
					t.Errorf("%s: %v", key, err)
					continue
				}
				if got := fmt.Sprintf("%x", h.Sum(nil)); got != want[key] {
					t.Errorf("%s: sha256 %s, was %s", key, got, want[key])
				}
			}
		}
	}
}
