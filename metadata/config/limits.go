package config

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits on what the agent takes in. Every source of userdata and metadata (an HTTP answer, a
// file on the metadata CD, a fw_cfg entry, a file= provider) is capped at MaxData; the JSON
// expansion of userdata is capped at MaxEntries entries (files and directories), MaxDepth
// levels and MaxData bytes of content in all.
const (
	MaxData    = 16 << 20
	MaxEntries = 4096
	MaxDepth   = 32
)

// TooLargeError says that a source held more than the agent takes.
type TooLargeError struct {
	Source string // what was read: a path, a URL, a fw_cfg entry
	Size   int64  // its size when known, else -1 (it was cut off at Limit+1 bytes)
	Limit  int64
}

func (e *TooLargeError) Error() string {
	if e.Size >= 0 {
		return fmt.Sprintf("%s: %d bytes, over the %d-byte limit", e.Source, e.Size, e.Limit)
	}
	return fmt.Sprintf("%s: more than the %d-byte limit", e.Source, e.Limit)
}

// ReadAllMax reads r to the end, refusing (with a *TooLargeError naming source) more than
// limit bytes; it never holds more than limit+1 bytes.
func ReadAllMax(r io.Reader, source string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", source, err)
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Source: source, Size: -1, Limit: limit}
	}
	return b, nil
}

// ReadFileMax reads the file at path, refusing one larger than limit bytes before reading it
// when its size is known, and otherwise (devices, sysfs, a file still growing) as soon as more
// than limit bytes have arrived.
func ReadFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		return nil, &TooLargeError{Source: path, Size: st.Size(), Limit: limit}
	}
	return ReadAllMax(f, path, limit)
}

// IsTooLarge reports whether err is (or wraps) a *TooLargeError.
func IsTooLarge(err error) bool {
	var e *TooLargeError
	return errors.As(err, &e)
}
