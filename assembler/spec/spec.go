package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse parses one spec file strictly. filename names the file in errors
// and its directory is where relative `files: source:` paths are resolved.
// Parse checks the shape of the document (keys, types, required fields);
// Validate checks names and references once all files are merged.
//
// A document larger than MaxSpecBytes, or whose aliases expand to more than
// that, is refused before it is decoded.
func Parse(filename string, data []byte) (*Moby, error) {
	root, err := parseNode(filename, data)
	if err != nil {
		return nil, err
	}
	m := &Moby{}
	d := &decoder{file: filename}
	if err := d.decode(root, reflect0(m), ""); err != nil {
		return nil, err
	}
	dir := filepath.Dir(filename)
	if err := m.recordPositions(d, root, dir); err != nil {
		return nil, err
	}
	return m, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func syntaxError(file string, err error) error {
	e := &Error{File: file, Msg: "invalid YAML", Err: err}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
	}
	return e
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

func seqItems(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		if c.Kind == yaml.AliasNode && c.Alias != nil {
			c = c.Alias
		}
		out[i] = c
	}
	return out
}

// recordPositions remembers where each entry was defined and checks the
// fields LinuxKit's schema marks as required.
func (m *Moby) recordPositions(d *decoder, root *yaml.Node, dir string) error {
	top := root
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	if k := mappingValue(top, "kernel"); k != nil {
		m.kernelPos = d.pos(k, "kernel")
		if img := mappingValue(k, "image"); img != nil {
			m.kernelPos = d.pos(img, "kernel.image")
		}
	}
	if n := mappingValue(top, "init"); n != nil {
		for i, it := range seqItems(n) {
			m.initPos = append(m.initPos, d.pos(it, fmt.Sprintf("init[%d]", i)))
		}
	}
	for _, sec := range []struct {
		key  string
		list []*Image
	}{{"onboot", m.Onboot}, {"onshutdown", m.Onshutdown}, {"services", m.Services}} {
		items := seqItems(mappingValue(top, sec.key))
		for i, img := range sec.list {
			field := fmt.Sprintf("%s[%d]", sec.key, i)
			if img == nil {
				return d.pos(top, field).errorf("must be a mapping with name and image")
			}
			it := items[i]
			img.pos = d.pos(it, field)
			img.imagePos = img.pos
			if in := mappingValue(it, "image"); in != nil {
				img.imagePos = d.pos(in, field+".image")
			}
			if mappingValue(it, "name") == nil || img.Name == "" {
				return img.pos.errorf("name is required")
			}
			img.pos.Field = fmt.Sprintf("%s[%d] (%s)", sec.key, i, img.Name)
			if mappingValue(it, "image") == nil || img.Image == "" {
				return img.pos.errorf("image is required")
			}
		}
	}
	items := seqItems(mappingValue(top, "files"))
	for i := range m.Files {
		m.Files[i].pos = d.pos(items[i], fmt.Sprintf("files[%d]", i))
		m.Files[i].dir = dir
	}
	items = seqItems(mappingValue(top, "volumes"))
	for i, v := range m.Volumes {
		if v == nil {
			return d.pos(top, fmt.Sprintf("volumes[%d]", i)).errorf("must be a mapping with a name")
		}
		v.pos = d.pos(items[i], fmt.Sprintf("volumes[%d]", i))
		if v.Name == "" {
			return v.pos.errorf("name is required")
		}
		if f := mappingValue(items[i], "format"); f != nil {
			if err := checkVolumeFormat(v.Format); err != nil {
				return d.pos(f, fmt.Sprintf("volumes[%d].format", i)).errorf("%v", err)
			}
		}
	}
	return nil
}

// Load reads and parses each path, merges them in order and validates the
// result.
func Load(paths ...string) (*Moby, error) {
	if len(paths) == 0 {
		return nil, errors.New("no spec files given")
	}
	var m *Moby
	for _, p := range paths {
		n, err := readFile(p)
		if err != nil {
			return nil, err
		}
		if m == nil {
			m = n
			continue
		}
		if m, err = Merge(m, n); err != nil {
			return nil, err
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// readFile reads and parses one spec file, at most MaxSpecBytes of it. A
// pipe (`mobykit build <(…)`) is fine: the read is bounded either way.
func readFile(p string) (*Moby, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	defer f.Close()
	return Read(p, f)
}

// Merge appends over to base as LinuxKit's AppendConfig does: kernel fields
// set in over replace base's; init, onboot, onshutdown, services, files and
// volumes are appended in order. Neither input is modified. A service name
// defined in both is an error naming both places.
func Merge(base, over *Moby) (*Moby, error) {
	if base == nil {
		base = &Moby{}
	}
	if over == nil {
		over = &Moby{}
	}
	m := *base
	if over.Kernel.Image != "" {
		m.Kernel.Image = over.Kernel.Image
		m.kernelPos = over.kernelPos
	}
	if over.Kernel.Cmdline != "" {
		m.Kernel.Cmdline = over.Kernel.Cmdline
	}
	if over.Kernel.Binary != "" {
		m.Kernel.Binary = over.Kernel.Binary
	}
	if over.Kernel.Tar != nil {
		m.Kernel.Tar = over.Kernel.Tar
	}
	if over.Kernel.UCode != "" {
		m.Kernel.UCode = over.Kernel.UCode
	}
	m.Init = concat(base.Init, over.Init)
	m.initPos = concat(base.initPos, over.initPos)
	m.Onboot = concat(base.Onboot, over.Onboot)
	m.Onshutdown = concat(base.Onshutdown, over.Onshutdown)
	m.Services = concat(base.Services, over.Services)
	m.Files = concat(base.Files, over.Files)
	m.Volumes = concat(base.Volumes, over.Volumes)
	if over.Trust != nil {
		m.Trust = over.Trust
	}
	if err := uniqueNames("services", m.Services); err != nil {
		return nil, err
	}
	return &m, nil
}

func concat[T any](a, b []T) []T {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]T, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

// IDMap returns the uids/gids LinuxKit allocates to containers so that
// `uid:`, `gid:` and `additionalGids:` may name a container: 100, 101, …
// in onboot, onshutdown, services order (a later duplicate name wins).
// "root" and "" are 0 and not in the map.
func (m *Moby) IDMap() map[string]uint32 {
	ids := map[string]uint32{}
	id := uint32(100)
	for _, l := range [][]*Image{m.Onboot, m.Onshutdown, m.Services} {
		for _, img := range l {
			ids[img.Name] = id
			id++
		}
	}
	return ids
}

// VolumeByName returns the volume called name, or nil.
func (m *Moby) VolumeByName(name string) *Volume {
	for _, v := range m.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Volumes returns the volumes by name.
func (m *Moby) VolumeMap() map[string]*Volume {
	out := make(map[string]*Volume, len(m.Volumes))
	for _, v := range m.Volumes {
		out[v.Name] = v
	}
	return out
}

// Defaulted returns a copy of m with LinuxKit's spec-level defaults made
// explicit: the kernel binary ("kernel") and modules tarball ("kernel.tar").
// Per-image defaults depend on each image's config and label; see
// bundle.Effective.
func (m *Moby) Defaulted() *Moby {
	c := *m
	if c.Kernel.Image != "" {
		if c.Kernel.Binary == "" {
			c.Kernel.Binary = "kernel"
		}
		if c.Kernel.Tar == nil {
			t := "kernel.tar"
			c.Kernel.Tar = &t
		}
	}
	return &c
}

// Bytes returns m as YAML, with the OCI field names, in LinuxKit's key
// order. Parse(Bytes()) gives back an equal spec. For --dry-run, print
// m.Defaulted().Bytes().
func (m *Moby) Bytes() ([]byte, error) {
	j, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	// JSON is YAML: decoding it into a node keeps the key order; clearing
	// the flow style then gives block YAML.
	var n yaml.Node
	if err := yaml.Unmarshal(j, &n); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	blockStyle(&n)
	dropEmptyKernel(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	return b.Bytes(), nil
}

// dropEmptyKernel removes "kernel: {}" (a spec without a kernel section).
func dropEmptyKernel(doc *yaml.Node) {
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "kernel" && len(top.Content[i+1].Content) == 0 {
			top.Content = append(top.Content[:i], top.Content[i+2:]...)
			return
		}
	}
}

func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		switch {
		case !strings.Contains(n.Value, "\n"):
			n.Style &^= yaml.DoubleQuotedStyle
		case literalSafe(n.Value):
			n.Style = yaml.LiteralStyle
		default:
			n.Style = yaml.DoubleQuotedStyle
		}
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// literalSafe tells whether a multi-line string reads back unchanged from
// a YAML literal block: printable, no leading blank, no trailing spaces.
func literalSafe(s string) bool {
	if s == "" || s[0] == ' ' || s[0] == '\n' || strings.TrimSpace(s) == "" {
		return false
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t") {
			return false
		}
		for _, r := range line {
			if r < 0x20 && r != '\t' || r == 0x7f || r == 0xfeff || r == 0x85 || r == 0x2028 || r == 0x2029 {
				return false
			}
		}
	}
	return true
}

// ImageRefs returns every image reference used (kernel, init, containers,
// volumes), as written in the spec, sorted and unique.
func (m *Moby) ImageRefs() []string {
	set := map[string]bool{}
	if m.Kernel.Image != "" {
		set[m.Kernel.Image] = true
	}
	for _, i := range m.Init {
		set[i] = true
	}
	for _, l := range [][]*Image{m.Onboot, m.Onshutdown, m.Services} {
		for _, i := range l {
			set[i.Image] = true
		}
	}
	for _, v := range m.Volumes {
		if v.Image != "" {
			set[v.Image] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParseLabel parses an image's org.mobyproject.config label (JSON or
// YAML) strictly, as LinuxKit's NewImage does: the per-image fields only,
// name and image may not be set. origin names the image in errors.
func ParseLabel(origin string, data []byte) (*ImageConfig, error) {
	root, err := parseNode(origin, data)
	if err != nil {
		return nil, err
	}
	top := root
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	d := &decoder{file: origin}
	if top.Kind != yaml.MappingNode {
		if top.Kind == yaml.DocumentNode {
			return &ImageConfig{}, nil
		}
		return nil, d.pos(top, "").errorf("label must be an object, not %s", kindName(top))
	}
	var img Image
	if err := d.decode(root, reflect0(&img), ""); err != nil {
		return nil, err
	}
	if n := mappingValue(top, "name"); n != nil {
		return nil, d.pos(n, "name").errorf("name cannot be set in the %s label", "org.mobyproject.config")
	}
	if n := mappingValue(top, "image"); n != nil {
		return nil, d.pos(n, "image").errorf("image cannot be set in the %s label", "org.mobyproject.config")
	}
	if err := img.ImageConfig.check(Pos{File: origin, Field: "label"}, nil); err != nil {
		return nil, err
	}
	return &img.ImageConfig, nil
}
