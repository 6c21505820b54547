package assembler

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/layer"
	"github.com/mobykit/mobykit/internal/atomicfile"
)

// layoutVersion is part of every segment key: bump it whenever the bytes
// written for the same inputs change.
const layoutVersion = "mobykit-segment-v1"

// segment is one independently compressed cpio archive of the initramfs.
type segment struct {
	what string // for messages: "service sshd rootfs"
	key  string // hex sha256 of everything that determines its bytes
	// write produces the cpio entries; nil when the bytes are already known
	// (data) or the segment is cached.
	write func(cw *initrd.Writer) error
	// data is the uncompressed cpio for small segments built in memory.
	data []byte

	file   string // path of the compressed segment in the cache
	size   int64  // uncompressed size
	reused bool
}

type segMeta struct {
	Size int64 `json:"size"`
}

func keyOf(parts ...string) string {
	h := sha256.New()
	h.Write([]byte(layoutVersion))
	for _, p := range parts {
		fmt.Fprintf(h, "\x00%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeNodes writes the sorted nodes of fs under prefix (which ends in "/"
// or is ""), preceded by the prefix's own directories. Hard links (nodes
// sharing an Object) share an inode; the first name written carries the
// content.
func writeNodes(cw *initrd.Writer, prefix string, nodes []*layer.Node, ino *uint32) error {
	if err := writePrefix(cw, prefix, ino); err != nil {
		return err
	}
	links := map[*layer.Object]uint32{}
	for _, n := range nodes {
		if n.Obj != nil {
			links[n.Obj]++
		}
	}
	inos := map[*layer.Object]uint32{}
	for _, n := range nodes {
		h := initrd.Header{
			Name: prefix + n.Name, Mode: n.Mode, UID: n.UID, GID: n.GID,
			Linkname: n.Linkname, DevMajor: n.DevMajor, DevMinor: n.DevMinor,
		}
		*ino++
		h.Ino = *ino
		var data io.Reader
		if n.Obj != nil {
			h.NLink = links[n.Obj]
			if first, seen := inos[n.Obj]; seen {
				h.Ino = first
				*ino--
			} else {
				inos[n.Obj] = h.Ino
				h.Size = n.Obj.Data.Size
				data = n.Obj.Data.Reader()
			}
		}
		if err := cw.WriteHeader(&h); err != nil {
			return err
		}
		if data != nil && h.Size > 0 {
			if _, err := cw.ReadFrom(data); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
	}
	return nil
}

// writePrefix writes the directories of prefix ("containers/onboot/000-x/")
// with mode 0755, as LinuxKit does for each bundle.
func writePrefix(cw *initrd.Writer, prefix string, ino *uint32) error {
	if prefix == "" {
		return nil
	}
	p := strings.TrimSuffix(prefix, "/")
	parts := strings.Split(p, "/")
	for i := range parts {
		*ino++
		if err := cw.WriteHeader(&initrd.Header{Name: strings.Join(parts[:i+1], "/"), Mode: fstree.TypeDir | 0o755, Ino: *ino}); err != nil {
			return err
		}
	}
	return nil
}

// segmentStore keeps compressed segments in the cache directory.
type segmentStore struct {
	dir   string
	comp  initrd.Compression
	mtime int64
	limit int64
}

func (s *segmentStore) paths(key string) (data, meta string) {
	base := filepath.Join(s.dir, key[:2], fmt.Sprintf("%s-%d", key, s.mtime))
	return base + "." + string(s.comp), base + ".json"
}

// lookup fills in a cached segment's file and size.
func (s *segmentStore) lookup(seg *segment) bool {
	data, meta := s.paths(seg.key)
	raw, err := os.ReadFile(meta)
	if err != nil {
		return false
	}
	var m segMeta
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	if _, err := os.Stat(data); err != nil {
		return false
	}
	seg.file, seg.size, seg.reused = data, m.Size, true
	return true
}

// produce writes seg's compressed form into the store.
func (s *segmentStore) produce(seg *segment) error {
	data, meta := s.paths(seg.key)
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		return err
	}
	var size int64
	err := atomicfile.Write(data, 0o644, func(w io.Writer) error {
		zw, err := initrd.Compress(w, s.comp)
		if err != nil {
			return err
		}
		cw := initrd.NewWriter(zw, initrd.WithMTime(s.mtime), initrd.WithLimit(s.limit))
		if seg.data != nil {
			if _, err := zw.Write(seg.data); err != nil {
				return err
			}
			size = int64(len(seg.data))
		} else {
			if err := seg.write(cw); err != nil {
				return err
			}
			if err := cw.Close(); err != nil {
				return err
			}
			size = cw.Written()
		}
		return zw.Close()
	})
	if err != nil {
		return fmt.Errorf("%s: %w", seg.what, err)
	}
	raw, _ := json.Marshal(segMeta{Size: size})
	if err := atomicfile.Write(meta, 0o644, func(w io.Writer) error { _, err := w.Write(raw); return err }); err != nil {
		return err
	}
	seg.file, seg.size = data, size
	return nil
}

// memSegment builds a small segment in memory; its key is the hash of its
// bytes, so identical content is never compressed twice.
func memSegment(what string, mtime, limit int64, fill func(cw *initrd.Writer) error) (*segment, error) {
	var buf bytes.Buffer
	cw := initrd.NewWriter(&buf, initrd.WithMTime(mtime), initrd.WithLimit(limit))
	if err := fill(cw); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := cw.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return &segment{what: what, key: keyOf("mem", hex.EncodeToString(sum[:])), data: buf.Bytes()}, nil
}
