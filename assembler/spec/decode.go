package spec

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds the work done on one document (alias expansion included),
// so hostile input cannot make the parser run away.
const maxNodes = 1 << 18

// decoder decodes a yaml.Node tree into Go values strictly: unknown keys,
// duplicate keys and values of the wrong YAML type are errors naming the
// file, line and field. It follows the field names LinuxKit's schema uses:
// `yaml` tags for mobykit types, and the OCI (json) names for runtime-spec
// types, matched case-insensitively there.
type decoder struct {
	file  string
	nodes int
}

func (d *decoder) pos(n *yaml.Node, field string) Pos {
	return Pos{File: d.file, Line: n.Line, Column: n.Column, Field: field}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!null":
			return "null"
		}
		return fmt.Sprintf("%s %q", n.Tag, n.Value)
	}
	return "an unexpected node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldInfo describes one settable key of a struct.
type fieldInfo struct {
	name  string
	index []int
}

// fieldCache holds structFields results: the decoder meets the same few
// types over and over.
var fieldCache sync.Map // reflect.Type -> []fieldInfo

func cachedFields(t reflect.Type) []fieldInfo {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]fieldInfo)
	}
	f := structFields(t)
	fieldCache.Store(t, f)
	return f
}

func structFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		// An embedded struct without a name of its own contributes its
		// fields, as in encoding/json: runtime-spec's LinuxWeightDevice
		// and LinuxThrottleDevice embed LinuxBlockIODevice (major, minor).
		jname, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		embedded := f.Anonymous && name == "" && jname == "" && f.Type.Kind() == reflect.Struct
		if !f.IsExported() && !embedded {
			continue
		}
		if strings.Contains(opts, "inline") || embedded {
			for _, sub := range structFields(f.Type) {
				out = append(out, fieldInfo{name: sub.name, index: append([]int{i}, sub.index...)})
			}
			continue
		}
		if name == "" {
			if jname == "-" {
				continue
			}
			name = jname
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, fieldInfo{name: name, index: append([]int(nil), i)})
	}
	return out
}

// hasYAMLTags tells mobykit's own types (exact key names) from runtime-spec
// types (OCI names, matched case-insensitively, as LinuxKit's schema spells
// some in lower case and some in camel case).
func hasYAMLTags(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if _, ok := t.Field(i).Tag.Lookup("yaml"); ok {
			return true
		}
	}
	return false
}

var ifaceType = reflect.TypeOf((*any)(nil)).Elem()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	d.nodes++
	if d.nodes > maxNodes {
		return d.pos(n, path).errorf("document too large or too many alias expansions")
	}
	if n.Kind == 0 {
		return nil // empty document
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return d.decode(n.Content[0], v, path)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return d.pos(n, path).errorf("unresolved alias")
		}
		return d.decode(n.Alias, v, path)
	}
	// null means "not set": leave the zero value.
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, v.Elem(), path)
	case reflect.Interface:
		if v.Type() != ifaceType {
			return d.pos(n, path).errorf("cannot decode into %s", v.Type())
		}
		return d.decodeID(n, v, path)
	case reflect.Struct:
		return d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.pos(n, path).errorf("must be a list, not %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		return d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			return d.pos(n, path).errorf("must be a string, not %s (quote it)", kindName(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return d.pos(n, path).errorf("must be true or false, not %s", kindName(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return d.pos(n, path).wrap(err, "bad boolean")
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := d.int(n, path)
		if err != nil {
			return err
		}
		if v.OverflowInt(i) {
			return d.pos(n, path).errorf("integer %d out of range", i)
		}
		v.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return d.pos(n, path).errorf("must be an integer, not %s", kindName(n))
		}
		var u uint64
		if err := n.Decode(&u); err != nil {
			return d.pos(n, path).errorf("must be a non-negative integer, not %s", n.Value)
		}
		if v.OverflowUint(u) {
			return d.pos(n, path).errorf("integer %d out of range", u)
		}
		v.SetUint(u)
		return nil
	}
	return d.pos(n, path).errorf("unsupported field type %s", v.Type())
}

func (d *decoder) int(n *yaml.Node, path string) (int64, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return 0, d.pos(n, path).errorf("must be an integer, not %s", kindName(n))
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		return 0, d.pos(n, path).errorf("integer %s out of range", n.Value)
	}
	return i, nil
}

// decodeID decodes a uid or gid: an integer or a name (LinuxKit's schema:
// string or integer).
func (d *decoder) decodeID(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		v.Set(reflect.ValueOf(n.Value))
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		i, err := d.int(n, path)
		if err != nil {
			return err
		}
		if i < 0 || i > math.MaxUint32 {
			return d.pos(n, path).errorf("id %d out of range", i)
		}
		v.Set(reflect.ValueOf(int(i)))
		return nil
	}
	return d.pos(n, path).errorf("must be a name or a number, not %s", kindName(n))
}

func (d *decoder) key(k *yaml.Node, path string) (string, error) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		return "", d.pos(k, path).errorf("keys must be strings, not %s", kindName(k))
	}
	if k.Tag == "!!merge" {
		return "", d.pos(k, path).errorf("merge keys (<<) are not supported")
	}
	return k.Value, nil
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.pos(n, path).errorf("must be a mapping, not %s", kindName(n))
	}
	t := v.Type()
	fields := cachedFields(t)
	exact := hasYAMLTags(t)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		key, err := d.key(kn, path)
		if err != nil {
			return err
		}
		var fi *fieldInfo
		for j := range fields {
			if fields[j].name == key || (!exact && strings.EqualFold(fields[j].name, key)) {
				fi = &fields[j]
				break
			}
		}
		if fi == nil {
			return d.pos(kn, join(path, key)).errorf("unknown field%s", suggest(key, fields))
		}
		if line, dup := seen[fi.name]; dup {
			return d.pos(kn, join(path, key)).errorf("duplicate key (first at line %d)", line)
		}
		seen[fi.name] = kn.Line
		if err := d.decode(vn, v.FieldByIndex(fi.index), join(path, key)); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.pos(n, path).errorf("must be a mapping, not %s", kindName(n))
	}
	if v.Type().Key().Kind() != reflect.String {
		return d.pos(n, path).errorf("unsupported map type %s", v.Type())
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		key, err := d.key(kn, path)
		if err != nil {
			return err
		}
		if line, dup := seen[key]; dup {
			return d.pos(kn, join(path, key)).errorf("duplicate key (first at line %d)", line)
		}
		seen[key] = kn.Line
		ev := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(vn, ev, join(path, key)); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), ev)
	}
	v.Set(m)
	return nil
}

// suggest proposes a known field close to an unknown key.
func suggest(key string, fields []fieldInfo) string {
	best, bestD := "", 3
	for _, f := range fields {
		if dd := distance(strings.ToLower(key), strings.ToLower(f.name)); dd < bestD {
			best, bestD = f.name, dd
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + strconv.Quote(best) + "?)"
}

// distance is the Levenshtein distance, bounded to short keys.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 10
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func reflect0(v any) reflect.Value { return reflect.ValueOf(v).Elem() }
