package flavormoby

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/spi"
)

// Pin sets spec_digest in every flavor-moby Flavor Properties found in a group spec document
// (one group, or a list of groups, as InfraKit's CLI takes) to the current content of its spec
// files, and returns the rewritten document. Relative spec paths are read from baseDir (the
// group file's folder) and kept as written. flavorPlugins names the Flavor plugins to touch
// (e.g. "flavor-moby"); groups using other flavors are left alone.
func Pin(doc []byte, baseDir string, flavorPlugins ...string) ([]byte, error) {
	out, _, err := rewriteFlavors(doc, "pin", true, flavorPlugins, func(props map[string]any) (bool, error) {
		p, err := decodeProps(props)
		if err != nil || len(p.Spec) == 0 {
			return false, err // an inline spec_yaml: the hash follows it already
		}
		d := ""
		if p.SpecContent != nil {
			d = contentDigest(p.Spec, p.SpecContent)
		} else if d, err = SpecDigest(resolve(baseDir, p.Spec)); err != nil {
			return false, err
		}
		setFold(props, "spec_digest", d)
		return true, nil
	})
	return out, err
}

// InlineSpecs prepares a group document for committing: in every flavor-moby Flavor whose
// spec names a relative path, it reads the spec files from baseDir (the group file's folder)
// and adds their content as spec_content, keeping the paths as written. The flavor plugin
// then builds what the user has in front of them whatever its own working folder, and the
// config hash, which covers the content but no absolute path, is the same on every machine
// that commits the same files. A stale spec_digest, and a spec that would read a relative
// `files: source:` (which the plugin could not find), are refused here. Specs given by
// absolute paths, or already inlined, are left for the plugin to read, as are groups using
// other flavors. changed says whether anything was inlined.
func InlineSpecs(doc []byte, baseDir string, flavorPlugins ...string) (out []byte, changed bool, err error) {
	return rewriteFlavors(doc, "inline", false, flavorPlugins, func(props map[string]any) (bool, error) {
		p, err := decodeProps(props)
		if err != nil || len(p.Spec) == 0 || p.SpecContent != nil {
			return false, err
		}
		relative := false
		for _, s := range p.Spec {
			relative = relative || !filepath.IsAbs(s)
		}
		if !relative {
			return false, nil
		}
		contents, err := readSpecs(resolve(baseDir, p.Spec))
		if err != nil {
			return false, err
		}
		if _, err := loadInline(p.Spec, contents); err != nil {
			return false, fmt.Errorf("flavor-moby: %w", err)
		}
		if d := contentDigest(p.Spec, contents); p.SpecDigest != "" && d != p.SpecDigest {
			return false, fmt.Errorf("flavor-moby: spec %s changed since it was pinned (spec_digest %s, files now %s): run `mobykit moby pin` on the group file, or drop spec_digest (the inlined content rolls the group by itself)", strings.Join(p.Spec, ", "), p.SpecDigest, d)
		}
		setFold(props, "spec_content", contents)
		return true, nil
	})
}

// InlineGroup is InlineSpecs for a decoded group spec.
func InlineGroup(g spi.GroupSpec, baseDir string, flavorPlugins ...string) (spi.GroupSpec, error) {
	in, err := json.Marshal(g)
	if err != nil {
		return g, err
	}
	doc, changed, err := InlineSpecs(in, baseDir, flavorPlugins...)
	if err != nil {
		return g, fmt.Errorf("group %s: %w", g.ID, err)
	}
	if !changed {
		return g, nil
	}
	var out spi.GroupSpec
	if err := json.Unmarshal(doc, &out); err != nil {
		return g, err
	}
	return out, nil
}

// resolve joins relative paths to baseDir.
func resolve(baseDir string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = p
		if !filepath.IsAbs(p) {
			out[i] = filepath.Join(baseDir, p)
		}
	}
	return out
}

// rewriteFlavors calls fn on the Properties of every Flavor of flavorPlugins in doc and
// returns the rewritten document and whether fn changed anything; with needOne it is an error
// to find no such Flavor. Numbers keep their text.
func rewriteFlavors(doc []byte, what string, needOne bool, flavorPlugins []string, fn func(map[string]any) (bool, error)) ([]byte, bool, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false, fmt.Errorf("flavor-moby: %s: group file: %w", what, err)
	}
	isOurs := func(name string) bool {
		lookup, _, _ := strings.Cut(name, "/")
		for _, f := range flavorPlugins {
			if lookup == f || name == f {
				return true
			}
		}
		return false
	}
	n, changed := 0, false
	var firstErr error
	var visit func(any)
	visit = func(x any) {
		switch t := x.(type) {
		case []any:
			for _, e := range t {
				visit(e)
			}
		case map[string]any:
			for k, e := range t {
				if strings.EqualFold(k, "Flavor") {
					if fl, ok := e.(map[string]any); ok {
						if name, _ := lookupFold(fl, "Plugin").(string); isOurs(name) {
							if props, ok := lookupFold(fl, "Properties").(map[string]any); ok {
								c, err := fn(props)
								if err != nil && firstErr == nil {
									firstErr = err
								}
								changed = changed || c
								n++
							}
						}
					}
				}
				visit(e)
			}
		}
	}
	visit(v)
	if firstErr != nil {
		return nil, false, firstErr
	}
	if n == 0 && needOne {
		return nil, false, fmt.Errorf("flavor-moby: %s: no Flavor using %s found", what, strings.Join(flavorPlugins, ", "))
	}
	out, err := json.MarshalIndent(v, "", "  ")
	return out, changed, err
}

func decodeProps(props map[string]any) (Properties, error) {
	b, _ := json.Marshal(props)
	var p Properties
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("flavor-moby: Flavor Properties: %w", err)
	}
	return p, nil
}

// setFold sets key in m, replacing any key equal to it under Unicode case folding (JSON
// decoding matches keys that way).
func setFold(m map[string]any, key string, v any) {
	for k := range m {
		if strings.EqualFold(k, key) {
			delete(m, k)
		}
	}
	m[key] = v
}

func lookupFold(m map[string]any, key string) any {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}
