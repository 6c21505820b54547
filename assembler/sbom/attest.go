package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrNone is returned by Read for an attestation manifest holding no SPDX document.
var ErrNone = errors.New("no SPDX attestation")

// Attestation returns the attestation manifest of doc for the image with manifest digest
// subject, as buildkit writes one: an OCI manifest with an unknown/unknown config and one
// in-toto layer. subjectName names the image in the statement (pkg:docker/NAME@TAG?...).
func Attestation(doc []byte, subjectName string, subject v1.Hash) (v1.Image, error) {
	if !json.Valid(doc) {
		return nil, errors.New("SPDX document: not JSON")
	}
	// compact: the predicate reads back as doc's bytes (compacted)
	stmt, err := json.Marshal(Statement{
		Type: StatementType, PredicateType: PredicateType,
		Subject:   []Subject{{Name: subjectName, Digest: map[string]string{subject.Algorithm: subject.Hex}}},
		Predicate: json.RawMessage(doc),
	})
	if err != nil {
		return nil, err
	}
	l := static.NewLayer(stmt, InTotoMediaType)
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: l, Annotations: map[string]string{PredicateAnnotation: PredicateType}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "unknown", "unknown"
	cf.History = nil
	return mutate.ConfigFile(img, cf)
}

// Descriptor returns the index descriptor of attestation manifest att for the image with
// manifest digest subject.
func Descriptor(att v1.Image, subject v1.Hash) (v1.Descriptor, error) {
	d, err := att.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	raw, err := att.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := att.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{
		MediaType: mt, Digest: d, Size: int64(len(raw)),
		Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{RefTypeAnnotation: AttestationManifest, RefDigestAnnotation: subject.String()},
	}, nil
}

// IsAttestation reports whether an index descriptor is an attestation manifest.
func IsAttestation(d v1.Descriptor) bool {
	return d.Annotations[RefTypeAnnotation] == AttestationManifest
}

// SPDXLayers returns the descriptors of the SPDX in-toto layers of an attestation manifest.
func SPDXLayers(m *v1.Manifest) []v1.Descriptor {
	var out []v1.Descriptor
	for _, l := range m.Layers {
		if l.MediaType == InTotoMediaType && l.Annotations[PredicateAnnotation] == PredicateType {
			out = append(out, l)
		}
	}
	return out
}

// Read returns the SPDX document of attestation manifest att (the first, as LinuxKit keeps
// each; buildkit writes one), reading at most max bytes of it: a larger one is refused from
// its declared size before any byte is read.
func Read(att v1.Image, max int64) ([]byte, error) {
	m, err := att.Manifest()
	if err != nil {
		return nil, fmt.Errorf("attestation manifest: %w", err)
	}
	ls := SPDXLayers(m)
	if len(ls) == 0 {
		return nil, ErrNone
	}
	d := ls[0]
	if d.Size > max || d.Size < 0 {
		return nil, fmt.Errorf("attestation %s of %d bytes: %w (limit %d)", d.Digest, d.Size, ErrTooLarge, max)
	}
	l, err := att.LayerByDigest(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("attestation %s: %w", d.Digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("attestation %s: %w", d.Digest, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("attestation %s: %w", d.Digest, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("attestation %s: more than %d bytes: %w", d.Digest, max, ErrTooLarge)
	}
	doc, err := Predicate(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("attestation %s: %w", d.Digest, err)
	}
	return doc, nil
}
