// Package sbom writes, attaches, reads and merges SPDX 2.3 JSON software bills of materials.
//
// An image's SBOM is attached as buildkit (and so `linuxkit pkg build`) attaches it: an
// attestation manifest next to the image manifest in the image index, with platform
// unknown/unknown and the annotations vnd.docker.reference.type=attestation-manifest and
// vnd.docker.reference.digest=<image manifest digest>; its one layer is an in-toto statement
// (application/vnd.in-toto+json, annotation in-toto.io/predicate-type=https://spdx.dev/Document)
// whose predicate is the SPDX document.
//
// The JSON is written with encoding/json rather than github.com/spdx/tools-golang: mobykit
// writes a small subset of SPDX and must pass through whatever another tool (syft) wrote
// unchanged while renaming its element IDs, bound what it reads, and produce the same bytes
// for the same content. Documents read here keep every field: packages, files and
// relationships are kept as JSON objects and only the ID fields are rewritten.
package sbom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// SPDX and attestation constants.
const (
	Version     = "SPDX-2.3"
	DataLicense = "CC0-1.0"
	DocumentID  = "SPDXRef-DOCUMENT"

	// PredicateType is the in-toto predicate type of an SPDX document.
	PredicateType = "https://spdx.dev/Document"
	// StatementType is the in-toto statement type buildkit writes.
	StatementType = "https://in-toto.io/Statement/v0.1"
	// InTotoMediaType is the media type of an attestation layer.
	InTotoMediaType = "application/vnd.in-toto+json"
	// PredicateAnnotation names the predicate type of an attestation layer.
	PredicateAnnotation = "in-toto.io/predicate-type"
	// RefTypeAnnotation and RefDigestAnnotation mark an attestation manifest in an index.
	RefTypeAnnotation   = "vnd.docker.reference.type"
	RefDigestAnnotation = "vnd.docker.reference.digest"
	// AttestationManifest is the value of RefTypeAnnotation for an attestation manifest.
	AttestationManifest = "attestation-manifest"

	// NamespacePrefix starts every document namespace mobykit writes.
	NamespacePrefix = "https://github.com/mobykit/mobykit/spdx/"
	// MaxSize bounds the bytes of one image's attestation read; larger ones are refused.
	MaxSize = 16 << 20
)

// Checksum is an SPDX checksum.
type Checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

// ExternalRef is an SPDX external reference (a purl).
type ExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

// Package is the part of an SPDX package mobykit writes.
type Package struct {
	ID               string        `json:"SPDXID"`
	Name             string        `json:"name"`
	Version          string        `json:"versionInfo,omitempty"`
	FileName         string        `json:"packageFileName,omitempty"`
	Supplier         string        `json:"supplier,omitempty"`
	DownloadLocation string        `json:"downloadLocation"`
	FilesAnalyzed    bool          `json:"filesAnalyzed"`
	Checksums        []Checksum    `json:"checksums,omitempty"`
	LicenseConcluded string        `json:"licenseConcluded"`
	LicenseDeclared  string        `json:"licenseDeclared"`
	CopyrightText    string        `json:"copyrightText"`
	Comment          string        `json:"comment,omitempty"`
	ExternalRefs     []ExternalRef `json:"externalRefs,omitempty"`
	PrimaryPurpose   string        `json:"primaryPackagePurpose,omitempty"`
}

// Relationship is an SPDX relationship.
type Relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// CreationInfo is SPDX's creationInfo.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Document is an SPDX document as mobykit writes it.
type Document struct {
	Version       string         `json:"spdxVersion"`
	DataLicense   string         `json:"dataLicense"`
	ID            string         `json:"SPDXID"`
	Name          string         `json:"name"`
	Namespace     string         `json:"documentNamespace"`
	CreationInfo  CreationInfo   `json:"creationInfo"`
	Packages      []Package      `json:"packages"`
	Relationships []Relationship `json:"relationships"`
}

// Creators are the creators mobykit names.
var Creators = []string{"Organization: mobykit", "Tool: mobykit"}

// Created formats t as SPDX wants it.
func Created(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// ID turns parts into a valid, content-derived SPDX element ID: SPDXRef-KIND-NAME-HASH,
// where NAME keeps the letters, digits, dots and dashes of name and HASH is a hash of every
// part, so that two packages of the same name never share an ID.
func ID(kind, name string, parts ...string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", kind, name)
	for _, p := range parts {
		fmt.Fprintf(h, "\x00%s", p)
	}
	return "SPDXRef-" + kind + "-" + clean(name) + "-" + hex.EncodeToString(h.Sum(nil))[:16]
}

func clean(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() > 64 {
		return b.String()[:64]
	}
	return b.String()
}

// Finish sets d's namespace from a hash of its content (everything but the namespace), so
// that the same content always gets the same namespace, and returns the JSON.
func (d *Document) Finish(name string) ([]byte, error) {
	d.Namespace = ""
	body, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	d.Namespace = NamespacePrefix + clean(name) + "-" + hex.EncodeToString(sum[:])
	return marshal(d)
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Subject is an in-toto subject.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Statement is an in-toto statement carrying an SPDX document.
type Statement struct {
	Type          string          `json:"_type"`
	PredicateType string          `json:"predicateType"`
	Subject       []Subject       `json:"subject"`
	Predicate     json.RawMessage `json:"predicate"`
}

// ErrTooLarge is returned for an SBOM over the size limit.
var ErrTooLarge = errors.New("SBOM too large")

// Predicate returns the SPDX document of an in-toto statement, checking it is one.
func Predicate(stmt []byte) ([]byte, error) {
	var s Statement
	if err := json.Unmarshal(stmt, &s); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	if s.PredicateType != PredicateType {
		return nil, fmt.Errorf("in-toto statement: predicate type %q, not %s", s.PredicateType, PredicateType)
	}
	if len(s.Predicate) == 0 || s.Predicate[0] != '{' {
		return nil, errors.New("in-toto statement: no SPDX document in its predicate")
	}
	return s.Predicate, nil
}

// element is a JSON object kept whole.
type element map[string]json.RawMessage

func (e element) str(k string) string {
	var s string
	if raw, ok := e[k]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	return s
}

func (e element) set(k, v string) {
	raw, _ := json.Marshal(v)
	e[k] = raw
}

// input is an SPDX document as read: only what merging needs is typed.
type input struct {
	Version       string    `json:"spdxVersion"`
	ID            string    `json:"SPDXID"`
	Name          string    `json:"name"`
	Packages      []element `json:"packages"`
	Files         []element `json:"files"`
	Snippets      []element `json:"snippets"`
	Relationships []element `json:"relationships"`
	OtherLicenses []element `json:"hasExtractedLicensingInfos"`
	Describes     []string  `json:"documentDescribes"`
}

// Image is one image's contribution to a merged SBOM.
type Image struct {
	// Where is where the spec uses the image ("init[0]", "onboot[1] dhcpcd"), used in errors
	// and as the image's name when its SBOM has none.
	Where string
	// Digest is the image manifest digest.
	Digest string
	// SPDX is the image's SPDX document, nil when the image has none.
	SPDX []byte
}

// Merger merges the SBOMs of the images of a build into one document.
type Merger struct {
	images []Image
	seen   map[string]bool
	total  int
}

// Add adds an image; the same digest added again is ignored.
func (m *Merger) Add(img Image) error {
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	if m.seen[img.Digest] {
		return nil
	}
	m.total += len(img.SPDX)
	if len(img.SPDX) > MaxSize {
		return fmt.Errorf("%s: SBOM of %d bytes: %w (limit %d)", img.Where, len(img.SPDX), ErrTooLarge, MaxSize)
	}
	if m.total > 4*MaxSize {
		return fmt.Errorf("%s: the images' SBOMs are over %d bytes together: %w", img.Where, 4*MaxSize, ErrTooLarge)
	}
	m.seen[img.Digest] = true
	m.images = append(m.images, img)
	return nil
}

// Merge returns the merged document: one package per image (named by the image's SBOM, or by
// where the spec uses it, with the manifest digest as version), each CONTAINS what its SBOM
// lists, with every element ID prefixed by the image's so that none collide. Nothing in it
// depends on the registry an image came from or on the clock: created is the given time,
// the namespace a hash of the content.
func (m *Merger) Merge(name string, created time.Time) ([]byte, error) {
	out := map[string]any{
		"spdxVersion": Version, "dataLicense": DataLicense, "SPDXID": DocumentID, "name": name,
		"creationInfo": CreationInfo{Created: Created(created), Creators: Creators},
	}
	var pkgs, files, snippets, rels, licenses []any
	var describes []string
	licenseSeen := map[string]bool{}
	for i, img := range m.images {
		prefix := fmt.Sprintf("SPDXRef-I%d-", i)
		imgID := fmt.Sprintf("SPDXRef-Image-%d", i)
		imgName := img.Where
		var in input
		if img.SPDX != nil {
			if err := json.Unmarshal(img.SPDX, &in); err != nil {
				return nil, fmt.Errorf("%s: SBOM: %w", img.Where, err)
			}
			if !strings.HasPrefix(in.Version, "SPDX-2.") {
				return nil, fmt.Errorf("%s: SBOM: spdxVersion %q, want SPDX-2.x", img.Where, in.Version)
			}
			if in.Name != "" {
				imgName = in.Name
			}
		}
		alg, hexsum, _ := strings.Cut(img.Digest, ":")
		ip := Package{
			ID: imgID, Name: imgName, Version: img.Digest, DownloadLocation: "NOASSERTION",
			Checksums:        []Checksum{{Algorithm: strings.ToUpper(alg), Value: hexsum}},
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			PrimaryPurpose: "CONTAINER",
			Comment:        "image used as " + img.Where,
		}
		if img.SPDX == nil {
			ip.Comment += "; the image has no SBOM"
		}
		pkgs = append(pkgs, ip)
		describes = append(describes, imgID)
		rels = append(rels, Relationship{Element: DocumentID, Type: "DESCRIBES", Related: imgID})
		rename := func(id string) string {
			switch {
			case id == in.ID || id == DocumentID:
				return imgID
			case strings.Contains(id, ":") || id == "NONE" || id == "NOASSERTION":
				return id // DocumentRef-X:..., or no element
			case strings.HasPrefix(id, "SPDXRef-"):
				return prefix + strings.TrimPrefix(id, "SPDXRef-")
			default:
				return prefix + id
			}
		}
		for _, p := range in.Packages {
			p.set("SPDXID", rename(p.str("SPDXID")))
			if raw, ok := p["hasFiles"]; ok {
				var ids []string
				if json.Unmarshal(raw, &ids) == nil {
					for j := range ids {
						ids[j] = rename(ids[j])
					}
					p["hasFiles"], _ = json.Marshal(ids)
				}
			}
			pkgs = append(pkgs, p)
		}
		for _, f := range in.Files {
			f.set("SPDXID", rename(f.str("SPDXID")))
			files = append(files, f)
		}
		for _, s := range in.Snippets {
			s.set("SPDXID", rename(s.str("SPDXID")))
			s.set("snippetFromFile", rename(s.str("snippetFromFile")))
			snippets = append(snippets, s)
		}
		described := map[string]bool{}
		for _, r := range in.Relationships {
			el, typ, rel := r.str("spdxElementId"), r.str("relationshipType"), r.str("relatedSpdxElement")
			if el == in.ID || el == DocumentID {
				if typ == "DESCRIBES" {
					typ = "CONTAINS" // the image contains what its document described
					described[rel] = true
				}
			}
			r.set("spdxElementId", rename(el))
			r.set("relationshipType", typ)
			r.set("relatedSpdxElement", rename(rel))
			rels = append(rels, r)
		}
		for _, d := range in.Describes {
			if !described[d] {
				rels = append(rels, Relationship{Element: imgID, Type: "CONTAINS", Related: rename(d)})
			}
		}
		for _, l := range in.OtherLicenses {
			// LicenseRef-* IDs are document-wide; the same one from two images is kept once.
			id := l.str("licenseId")
			if !licenseSeen[id] {
				licenseSeen[id] = true
				licenses = append(licenses, l)
			}
		}
	}
	sort.Strings(describes)
	out["documentDescribes"] = describes
	out["packages"] = nonNil(pkgs)
	if len(files) > 0 {
		out["files"] = files
	}
	if len(snippets) > 0 {
		out["snippets"] = snippets
	}
	if len(licenses) > 0 {
		out["hasExtractedLicensingInfos"] = licenses
	}
	out["relationships"] = nonNil(rels)
	body, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	out["documentNamespace"] = NamespacePrefix + clean(name) + "-" + hex.EncodeToString(sum[:])
	return marshal(out)
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}
