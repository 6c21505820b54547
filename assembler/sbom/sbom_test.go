package sbom

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const docA = `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"a",
"packages":[{"SPDXID":"SPDXRef-P","name":"p","versionInfo":"1"}],
"relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-P"}]}`

// TestMergeRenamesAndDedupes: two images listing the same element ID get distinct IDs; the
// same image (digest) added twice is listed once; the result is the same for the same input
// and its namespace is a hash of it.
func TestMergeRenamesAndDedupes(t *testing.T) {
	merge := func() []byte {
		var m Merger
		for _, img := range []Image{
			{Where: "init[0]", Digest: "sha256:" + strings.Repeat("a", 64), SPDX: []byte(docA)},
			{Where: "onboot[0] x", Digest: "sha256:" + strings.Repeat("b", 64), SPDX: []byte(docA)},
			{Where: "services[0] x", Digest: "sha256:" + strings.Repeat("a", 64), SPDX: []byte(docA)},
			{Where: "services[1] y", Digest: "sha256:" + strings.Repeat("c", 64)},
		} {
			if err := m.Add(img); err != nil {
				t.Fatal(err)
			}
		}
		out, err := m.Merge("sbom", time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := merge()
	if string(merge()) != string(out) {
		t.Fatal("two merges of the same input differ")
	}
	var doc struct {
		Namespace string `json:"documentNamespace"`
		Packages  []struct {
			ID   string `json:"SPDXID"`
			Name string `json:"name"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range doc.Packages {
		ids = append(ids, p.ID+"="+p.Name)
	}
	want := "SPDXRef-Image-0=a SPDXRef-I0-P=p SPDXRef-Image-1=a SPDXRef-I1-P=p SPDXRef-Image-2=services[1] y"
	if strings.Join(ids, " ") != want {
		t.Errorf("packages %v, want %s", ids, want)
	}
	if !strings.HasPrefix(doc.Namespace, NamespacePrefix+"sbom-") || len(doc.Namespace) != len(NamespacePrefix)+len("sbom-")+64 {
		t.Errorf("namespace %q", doc.Namespace)
	}
}

func TestMergeBounds(t *testing.T) {
	var m Merger
	big := make([]byte, MaxSize+1)
	if err := m.Add(Image{Where: "init[0]", Digest: "sha256:1", SPDX: big}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "init[0]") {
		t.Errorf("one SBOM over MaxSize: %v", err)
	}
	m = Merger{}
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		err = m.Add(Image{Where: "onboot", Digest: "sha256:" + string(rune('a'+i)), SPDX: make([]byte, MaxSize)})
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("five SBOMs of MaxSize: %v", err)
	}
}

// FuzzMerge: whatever an image's SBOM holds, Merge returns an error or a JSON document, and
// never panics.
func FuzzMerge(f *testing.F) {
	f.Add([]byte(docA))
	f.Add([]byte(`{"spdxVersion":"SPDX-2.2","packages":[{"SPDXID":5}],"files":[{}],"snippets":[{"snippetFromFile":"x"}],"documentDescribes":["SPDXRef-A"],"hasExtractedLicensingInfos":[{"licenseId":"LicenseRef-1"},{"licenseId":"LicenseRef-1"}]}`))
	f.Add([]byte(`{"spdxVersion":"SPDX-2.3","relationships":[{"spdxElementId":"DocumentRef-x:SPDXRef-y","relatedSpdxElement":"NOASSERTION"}],"packages":[{"SPDXID":"SPDXRef-P","hasFiles":"x"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var m Merger
		if err := m.Add(Image{Where: "init[0]", Digest: "sha256:0", SPDX: doc}); err != nil {
			return
		}
		out, err := m.Merge("sbom", time.Unix(0, 0))
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON out of %q", doc)
		}
	})
}
