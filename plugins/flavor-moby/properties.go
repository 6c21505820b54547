package flavormoby

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/mobykit/mobykit/assembler/spec"
	"github.com/mobykit/mobykit/spi"
)

// Properties are the Flavor Properties of a group spec. Keys match case-insensitively.
type Properties struct {
	// Spec is the image spec: one path or a list of paths merged in order (LinuxKit YAML).
	// The plugin reads absolute paths itself. Relative paths are relative to the group file:
	// `mobykit group commit` reads them from the group file's folder and sends their content
	// in SpecContent, keeping the paths as written; the plugin refuses a relative path that
	// comes without its content, since it cannot know which folder it is relative to.
	Spec StringList `json:"spec"`
	// SpecContent is the content of each Spec file, in order, as `mobykit group commit`
	// inlines it. With it the plugin opens no file: Spec only names the files (in errors and
	// in spec_digest). Being part of the Properties, the content enters the group's config
	// hash, which is therefore the same on every machine committing the same files (it holds
	// no absolute path), and changes when a file is edited.
	SpecContent []string `json:"spec_content"`
	// SpecYAML is an inline spec, instead of Spec. Its content is part of the group's config
	// hash, so editing it rolls the group.
	SpecYAML string `json:"spec_yaml"`
	// SpecDigest pins the content of the Spec files ("sha256:<hex>", see SpecDigest). When
	// set, Validate and Prepare refuse files whose content differs; updating it is what
	// changes the config hash after the files are edited. Without it a warning is logged.
	SpecDigest string `json:"spec_digest"`
	// Format is the output format the instance plugin boots: "kernel+initrd" (default) or any
	// other name the assembler knows (e.g. an ISO or disk format).
	Format string `json:"format"`
	// Arch is the architecture the image is built for, amd64 or arm64 (default: the plugin's
	// own). When set, it is also passed to the instance plugin as Properties "arch" beside
	// "moby", so that instance-aws imports the image as an AMI of that architecture and
	// refuses instance types of the other.
	Arch string `json:"arch"`
	// Userdata is a template filled per instance and passed as the instance's Init: a JSON
	// object in LinuxKit's format ({"name":{"content":"...","perm":"0644"}, "dir":{"entries":
	// {...}}}), whose strings are templates, or a plain string template. See TemplateData.
	Userdata json.RawMessage `json:"userdata"`
	// Health says when an instance is healthy. With none, Healthy reports Healthy as soon as
	// the instance is listed.
	Health *Health `json:"health"`
	// Tags are added to every instance.
	Tags map[string]string `json:"tags"`
	// Insecure registries (host:port) the assembler may pull from over plain HTTP.
	Insecure []string `json:"insecure"`
}

// Health is a readiness check. At most one of HTTP, TCP, Etcd and Console is used, in that
// order.
type Health struct {
	// HTTP probes http://HOST:PORT/Path on the instance's published guest Port and wants a
	// 2xx answer, containing Expect when set.
	HTTP *HTTPCheck `json:"http"`
	// TCP wants a TCP connection to the published guest port.
	TCP *TCPCheck `json:"tcp"`
	// Etcd wants the instance to be a started, voting member of an etcd cluster that has a
	// leader, asked on its client port (see EtcdCheck).
	Etcd *EtcdCheck `json:"etcd"`
	// Console wants a console line matching this regular expression.
	Console string `json:"console"`
	// Timeout of one probe; default "2s".
	Timeout string `json:"timeout"`
	// Grace: an instance that still fails its probe this long after it started is reported
	// Unhealthy rather than Unknown (still booting); default "120s".
	Grace string `json:"grace"`
}

// HTTPCheck probes an HTTP endpoint.
type HTTPCheck struct {
	Port   int    `json:"port"`
	Path   string `json:"path"`
	Expect string `json:"expect"`
}

// TCPCheck probes a TCP port.
type TCPCheck struct {
	Port int `json:"port"`
}

// EtcdCheck asks an etcd member, through the JSON gateway of its client port
// (http://HOST:PORT/v3/...), for its status and the cluster's member list, and wants: a
// leader, no alarm, the member started (named) in the list and not a learner. The list is
// read linearizably, so the leader the member names is one a quorum follows.
type EtcdCheck struct {
	Port int `json:"port"`
}

// StringList decodes from a JSON string or a list of strings.
type StringList []string

// UnmarshalJSON accepts "a" and ["a","b"].
func (s *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = StringList{one}
		if one == "" {
			*s = nil
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a path or a list of paths: %w", err)
	}
	*s = many
	return nil
}

// parsed is Properties decoded and checked once, with everything a call needs compiled: the
// health durations and console regexp, and the userdata template.
type parsed struct {
	Properties
	// timeout and grace of the health check (defaults applied).
	timeout, grace time.Duration
	// console is the compiled health.console, nil when unset.
	console *regexp.Regexp
	// render fills the userdata for one instance; nil when no userdata is configured.
	render func(TemplateData) (string, error)
}

// parse decodes and checks Properties and compiles what they hold. It is the only place
// Properties are decoded; the plugin caches its results (see Plugin.parse).
func parse(raw spi.Any) (*parsed, error) {
	var p parsed
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("flavor-moby: Properties are empty: need spec or spec_yaml")
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&p.Properties); err != nil {
		return nil, fmt.Errorf("flavor-moby: Properties: %w", err)
	}
	if (len(p.Spec) == 0) == (p.SpecYAML == "") {
		return nil, fmt.Errorf("flavor-moby: Properties: give exactly one of spec (paths) and spec_yaml (inline)")
	}
	if p.SpecDigest != "" && p.SpecYAML != "" {
		return nil, fmt.Errorf("flavor-moby: Properties: spec_digest pins spec files; an inline spec_yaml needs none")
	}
	if p.SpecContent != nil && len(p.SpecContent) != len(p.Spec) {
		return nil, fmt.Errorf("flavor-moby: Properties.spec_content has %d entries for %d spec paths: want one per path", len(p.SpecContent), len(p.Spec))
	}
	if p.SpecContent == nil {
		for _, s := range p.Spec {
			if !filepath.IsAbs(s) {
				return nil, fmt.Errorf("flavor-moby: Properties.spec %q is a relative path and comes without its content (spec_content), so the plugin cannot know the folder it is relative to: commit the group with `mobykit group commit`, which reads it from the group file's folder, or give an absolute path", s)
			}
		}
	}
	if p.SpecDigest != "" && !digestRE.MatchString(p.SpecDigest) {
		return nil, fmt.Errorf("flavor-moby: Properties.spec_digest %q: want sha256:<64 hex>", p.SpecDigest)
	}
	if p.Format == "" {
		p.Format = "kernel+initrd"
	}
	switch p.Arch {
	case "", "amd64", "arm64":
	case "x86_64":
		p.Arch = "amd64"
	case "aarch64":
		p.Arch = "arm64"
	default:
		return nil, fmt.Errorf("flavor-moby: Properties.arch %q: want amd64 or arm64", p.Arch)
	}
	var err error
	if p.render, err = p.template(); err != nil {
		return nil, err
	}
	p.timeout, p.grace = 2*time.Second, 120*time.Second
	if h := p.Health; h != nil {
		for _, d := range []struct {
			name, v string
			into    *time.Duration
		}{{"timeout", h.Timeout, &p.timeout}, {"grace", h.Grace, &p.grace}} {
			if d.v != "" {
				if *d.into, err = time.ParseDuration(d.v); err != nil {
					return nil, fmt.Errorf("flavor-moby: Properties.health.%s: %w", d.name, err)
				}
				if *d.into < 0 {
					return nil, fmt.Errorf("flavor-moby: Properties.health.%s %q: must not be negative", d.name, d.v)
				}
			}
		}
		if h.HTTP != nil && (h.HTTP.Port < 1 || h.HTTP.Port > 65535) {
			return nil, fmt.Errorf("flavor-moby: Properties.health.http.port %d: want 1-65535", h.HTTP.Port)
		}
		if h.TCP != nil && (h.TCP.Port < 1 || h.TCP.Port > 65535) {
			return nil, fmt.Errorf("flavor-moby: Properties.health.tcp.port %d: want 1-65535", h.TCP.Port)
		}
		if h.Etcd != nil && (h.Etcd.Port < 1 || h.Etcd.Port > 65535) {
			return nil, fmt.Errorf("flavor-moby: Properties.health.etcd.port %d: want 1-65535", h.Etcd.Port)
		}
		if h.Console != "" {
			if p.console, err = regexp.Compile(h.Console); err != nil {
				return nil, fmt.Errorf("flavor-moby: Properties.health.console: %w", err)
			}
		}
	}
	return &p, nil
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// SpecDigest is the content digest of spec files as spec_digest records it: SHA-256 over
// each file's base name and content, in order.
func SpecDigest(paths []string) (string, error) {
	contents, err := readSpecs(paths)
	if err != nil {
		return "", err
	}
	return contentDigest(paths, contents), nil
}

// readSpecs reads spec files, each at most spec.MaxSpecBytes.
func readSpecs(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		fh, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("flavor-moby: spec: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(fh, spec.MaxSpecBytes+1))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("flavor-moby: spec %s: %w", p, err)
		}
		if len(b) > spec.MaxSpecBytes {
			return nil, fmt.Errorf("flavor-moby: spec %s: larger than %d MB", p, spec.MaxSpecBytes>>20)
		}
		out = append(out, string(b))
	}
	return out, nil
}

// contentDigest is SpecDigest over contents already read: SHA-256 over each file's base
// name and content, in order.
func contentDigest(names, contents []string) string {
	h := sha256.New()
	for i, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(n), len(contents[i]))
		io.WriteString(h, contents[i])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// specDigest is the digest of p's spec files: from the inlined content when there is some,
// else read from the files.
func (p Properties) specDigest() (string, error) {
	if p.SpecContent != nil {
		return contentDigest(p.Spec, p.SpecContent), nil
	}
	return SpecDigest(p.Spec)
}

// loadInline parses and merges inlined spec files. A relative `files: source:` is refused:
// the plugin builds away from the folder the spec came from, so it would name another file.
func loadInline(names, contents []string) (*spec.Moby, error) {
	var m *spec.Moby
	for i, n := range names {
		one, err := spec.Parse(n, []byte(contents[i]))
		if err != nil {
			return nil, err
		}
		for _, f := range one.Files {
			if f.Source != "" && !filepath.IsAbs(f.Source) && !strings.HasPrefix(f.Source, "~/") {
				return nil, fmt.Errorf("spec %s: files: %s: source %q is relative, and the spec is sent to the flavor plugin without its folder: use an absolute source or contents, or an absolute spec path", n, f.Path, f.Source)
			}
		}
		if m == nil {
			m = one
		} else if m, err = spec.Merge(m, one); err != nil {
			return nil, err
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// checkPinned verifies spec_digest against the files.
func (p Properties) checkPinned() (string, error) {
	if len(p.Spec) == 0 {
		return "", nil
	}
	d, err := p.specDigest()
	if err != nil {
		return "", err
	}
	if p.SpecDigest != "" && d != p.SpecDigest {
		return d, fmt.Errorf("flavor-moby: spec %s changed since it was pinned (spec_digest %s, files now %s): run `mobykit moby pin` on the group file and commit again", strings.Join(p.Spec, ", "), p.SpecDigest, d)
	}
	return d, nil
}

// TemplateData is what a userdata template sees.
type TemplateData struct {
	// Group is the group ID.
	Group string
	// Index is the position of LogicalID in the group's LogicalIDs (0-based), or -1 in a
	// group sized by Size, where members have no stable index.
	Index int
	// Sequence is InfraKit's Index.Sequence (the supervisor's target size, not a member
	// counter).
	Sequence uint
	// LogicalID is the member's logical ID, "" in a Size group.
	LogicalID string
	// Peers are the other members' logical IDs (addresses in a quorum group); empty in a Size
	// group. AllPeers includes this member.
	Peers, AllPeers []string
	// Size is the group's size.
	Size int
	// Tags are the instance's tags as prepared (infrakit.* and the flavor's).
	Tags map[string]string
	// ImageDigest is the digest of the built image.
	ImageDigest string
}

var funcs = template.FuncMap{
	"join": strings.Join,
	"json": func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
}

// template compiles the userdata once and returns a function that renders it for one
// instance, or nil when no userdata is configured.
func (p Properties) template() (func(TemplateData) (string, error), error) {
	raw := bytes.TrimSpace(p.Userdata)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	compile := func(s string) (*template.Template, error) {
		t, err := template.New("userdata").Funcs(funcs).Option("missingkey=error").Parse(s)
		if err != nil {
			return nil, fmt.Errorf("flavor-moby: Properties.userdata: %w", err)
		}
		return t, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("flavor-moby: Properties.userdata: %w", err)
		}
		t, err := compile(s)
		if err != nil {
			return nil, err
		}
		return func(d TemplateData) (string, error) {
			var b strings.Builder
			if err := t.Execute(&b, d); err != nil {
				return "", fmt.Errorf("flavor-moby: userdata template: %w", err)
			}
			return b.String(), nil
		}, nil
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("flavor-moby: Properties.userdata: want a string or a JSON object (LinuxKit entries): %w", err)
	}
	// Compile every string once now, so that errors show at Validate and rendering only
	// executes.
	tree, err := compileTree(obj, compile)
	if err != nil {
		return nil, err
	}
	return func(d TemplateData) (string, error) {
		out, err := renderTree(tree, d)
		if err != nil {
			return "", err
		}
		b, err := json.Marshal(out)
		return string(b), err
	}, nil
}

// compileTree returns v with every string value (not keys) replaced by its compiled template.
func compileTree(v any, compile func(string) (*template.Template, error)) (any, error) {
	switch t := v.(type) {
	case string:
		return compile(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			c, err := compileTree(e, compile)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			c, err := compileTree(e, compile)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return v, nil
	}
}

// renderTree executes the templates of a compileTree result into a fresh value.
func renderTree(v any, d TemplateData) (any, error) {
	switch t := v.(type) {
	case *template.Template:
		var b strings.Builder
		if err := t.Execute(&b, d); err != nil {
			return nil, fmt.Errorf("flavor-moby: userdata template: %w", err)
		}
		return b.String(), nil
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			r, err := renderTree(e, d)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			r, err := renderTree(e, d)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

// describe names the spec in errors: its paths, or "spec_yaml".
func (p *parsed) describe() string {
	if len(p.Spec) > 0 {
		return strings.Join(p.Spec, ",")
	}
	return "spec_yaml"
}
