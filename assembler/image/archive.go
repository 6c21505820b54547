package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/mobykit/mobykit/assembler/layer"
	"github.com/mobykit/mobykit/internal/atomicfile"
)

// Import adds the images of a `docker save` tarball or an OCI-layout
// tarball (or directory) to the cache and returns the references stored.
// Images without a reference in the archive are stored under
// "import/NAME@DIGEST". Each image is recorded for its own platform.
func (c *Cache) Import(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	if st.IsDir() {
		return c.importLayout(path, path)
	}
	has := func(n string) (bool, error) { return tarHas(path, n) }
	isDocker, err := has("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	isOCI, _ := has("oci-layout")
	switch {
	case isOCI:
		dir, err := os.MkdirTemp("", "mobykit-import-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if err := untar(path, dir); err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		return c.importLayout(path, dir)
	case isDocker:
		return c.importDocker(path)
	}
	return nil, fmt.Errorf("import %s: neither a docker save nor an OCI layout archive", path)
}

func tarHas(path, want string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if strings.TrimPrefix(h.Name, "./") == want {
			return true, nil
		}
	}
}

// untar extracts regular files and directories only, refusing any entry
// that would land outside dir.
func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := layer.CleanName(h.Name)
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		if n == "" {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(n))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unexpected type %q in an OCI layout", h.Name, h.Typeflag)
		}
	}
}

func imagePlatform(img v1.Image) (v1.Platform, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Platform{}, err
	}
	p := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if p.OS == "" {
		p.OS = "linux"
	}
	return p, nil
}

func (c *Cache) importDocker(path string) ([]string, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	var refs []string
	for i, d := range m {
		tags := d.RepoTags
		img, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(path) }, nil)
		if len(tags) > 0 {
			t, terr := name.NewTag(tags[0])
			if terr != nil {
				return nil, fmt.Errorf("import %s: tag %q: %w", path, tags[0], terr)
			}
			img, err = tarball.Image(func() (io.ReadCloser, error) { return os.Open(path) }, &t)
		} else if len(m) > 1 {
			return nil, fmt.Errorf("import %s: image %d has no tag and the archive holds several", path, i)
		}
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		if len(tags) == 0 {
			dig, err := img.Digest()
			if err != nil {
				return nil, err
			}
			tags = []string{"import/" + strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) + "@" + dig.String()}
		}
		p, err := imagePlatform(img)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		for _, t := range tags {
			ref, err := name.ParseReference(t)
			if err != nil {
				return nil, fmt.Errorf("import %s: %q: %w", path, t, err)
			}
			if _, err := c.Add(ref, img, p, nil); err != nil {
				return nil, fmt.Errorf("import %s: %w", path, err)
			}
			refs = append(refs, ref.Name())
		}
	}
	return refs, nil
}

func (c *Cache) importLayout(src, dir string) ([]string, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	ii, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	var refs []string
	var add func(ii v1.ImageIndex, d v1.Descriptor, refName string) error
	add = func(ii v1.ImageIndex, d v1.Descriptor, refName string) error {
		if d.MediaType.IsIndex() {
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			cm, err := child.IndexManifest()
			if err != nil {
				return err
			}
			for _, cd := range cm.Manifests {
				if err := add(child, cd, refName); err != nil {
					return err
				}
			}
			return nil
		}
		if !d.MediaType.IsImage() {
			return nil
		}
		img, err := ii.Image(d.Digest)
		if err != nil {
			return err
		}
		if refName == "" {
			refName = "import/" + strings.TrimSuffix(filepath.Base(src), filepath.Ext(src)) + "@" + d.Digest.String()
		}
		ref, err := name.ParseReference(refName)
		if err != nil {
			return fmt.Errorf("reference %q: %w", refName, err)
		}
		p, err := imagePlatform(img)
		if err != nil {
			return err
		}
		if _, err := c.Add(ref, img, p, nil); err != nil {
			return err
		}
		refs = append(refs, ref.Name())
		return nil
	}
	for _, d := range im.Manifests {
		if err := add(ii, d, d.Annotations[RefAnnotation]); err != nil {
			return nil, fmt.Errorf("import %s: %w", src, err)
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("import %s: no images found", src)
	}
	sort.Strings(refs)
	return refs, nil
}

// Export writes the cached images for refs (for platform p) to path as a
// `docker save` tarball, atomically.
func (c *Cache) Export(refs []string, p v1.Platform, path string) error {
	if len(refs) == 0 {
		return errors.New("export: no images named")
	}
	m := map[name.Reference]v1.Image{}
	for _, r := range refs {
		ref, err := name.ParseReference(r)
		if err != nil {
			return fmt.Errorf("export: %q: %w", r, err)
		}
		img, ok := c.Lookup(ref, p)
		if !ok {
			return fmt.Errorf("export: %s (%s) is not in the cache %s", r, p, c.dir)
		}
		m[ref] = img
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return tarball.MultiRefWrite(m, w) })
}
