package spec

import (
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// MaxSpecBytes bounds one spec document (and one image label): the bytes
// read from its file, and what it expands to once every alias is replaced
// by its anchor's contents. LinuxKit's own specs are a few KB; 16 MB leaves
// room for large `files: contents:` while keeping a hostile spec (an alias
// bomb: one 1 MiB string used 100,000 times) from costing more than a few
// times this in memory.
const MaxSpecBytes = 16 << 20

// tooLarge is the error for a document over MaxSpecBytes before parsing.
func tooLarge(file string) error {
	return &Error{File: file, Msg: fmt.Sprintf("spec is larger than %d MB", MaxSpecBytes>>20)}
}

// Read reads one spec document from r, at most MaxSpecBytes of it, and
// parses it (see Parse). A longer document is refused after reading
// MaxSpecBytes+1 bytes.
func Read(filename string, r io.Reader) (*Moby, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read spec %s: %w", filename, err)
	}
	if len(data) > MaxSpecBytes {
		return nil, tooLarge(filename)
	}
	return Parse(filename, data)
}

// parseNode parses data into a node tree, refusing a document larger than
// MaxSpecBytes, or one that expands to more than MaxSpecBytes. The node
// tree holds each anchor once, so this costs about the size of the
// document; only decoding would materialise the expansion.
func parseNode(file string, data []byte) (*yaml.Node, error) {
	if len(data) > MaxSpecBytes {
		return nil, tooLarge(file)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(file, err)
	}
	s := sizer{memo: map[*yaml.Node]int64{}, busy: map[*yaml.Node]bool{}}
	if s.size(&root) > MaxSpecBytes {
		return nil, &Error{File: file, Msg: fmt.Sprintf("spec expands to more than %d MB", MaxSpecBytes>>20)}
	}
	return &root, nil
}

// sizer measures what a node tree expands to: each scalar counts its
// length plus one, each list or mapping one, and an alias the whole size of
// its anchor each time it is used. Anchors are measured once (memo), so
// nested aliases (a billion laughs) cost their node count, not their
// expansion. The result saturates just above MaxSpecBytes; an alias used
// inside its own anchor expands forever and counts as too large.
type sizer struct {
	memo map[*yaml.Node]int64
	busy map[*yaml.Node]bool
}

func (s *sizer) size(n *yaml.Node) int64 {
	const over = MaxSpecBytes + 1
	if n == nil {
		return 0
	}
	if n.Kind == yaml.AliasNode {
		return s.size(n.Alias)
	}
	shared := n.Anchor != ""
	if shared {
		if v, ok := s.memo[n]; ok {
			return v
		}
		if s.busy[n] {
			return over
		}
		s.busy[n] = true
		defer delete(s.busy, n)
	}
	total := int64(len(n.Value)) + 1
	for _, c := range n.Content {
		if total += s.size(c); total > MaxSpecBytes {
			total = over
			break
		}
	}
	if shared {
		s.memo[n] = total
	}
	return total
}
