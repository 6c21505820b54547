package image

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// uploads counts blob uploads started (POST .../blobs/uploads/), the
// first request of every upload ggcr and docker clients make.
func (c *counting) uploads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.reqs {
		if strings.HasPrefix(r, "POST ") && strings.Contains(r, "/blobs/uploads/") {
			n++
		}
	}
	return n
}

func (c *counting) reset() {
	c.mu.Lock()
	c.reqs = nil
	c.mu.Unlock()
}

func cacheWith(t *testing.T, ref string, imgs ...v1.Image) *Cache {
	t.Helper()
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Add(pushRef(t, ref), img, v1.Platform{OS: "linux", Architecture: cf.Architecture}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPushTwiceUploadsNoBlob pushes a cached image, pulls it into an empty
// cache (the same manifest digest), and pushes it again: the second push
// starts no blob upload.
func TestPushTwiceUploadsNoBlob(t *testing.T) {
	host := memRegistry(t)
	img := randomImage(t, "amd64", 3)
	c := cacheWith(t, "mobykit/thing:1", img)
	tr := &counting{}
	r := NewResolver(c, WithArch("amd64"), WithTransport(tr))
	dst, err := Retarget("mobykit/thing:1", host+"/team")
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Push(context.Background(), "mobykit/thing:1", dst)
	if err != nil {
		t.Fatal(err)
	}
	if p.Digest != digestOf(t, img) {
		t.Errorf("pushed %s, want the cached manifest %s", p.Digest, digestOf(t, img))
	}
	if n := tr.uploads(); n != 4 {
		t.Errorf("first push started %d blob uploads, want 4 (3 layers and the config)", n)
	}
	tr.reset()
	if _, err := r.Push(context.Background(), "mobykit/thing:1", dst); err != nil {
		t.Fatal(err)
	}
	if n := tr.uploads(); n != 0 {
		t.Errorf("second push of the same content started %d blob uploads, want 0", n)
	}

	other, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewResolver(other, WithArch("amd64")).Resolve(context.Background(), host+"/team/mobykit/thing:1")
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, got) != digestOf(t, img) {
		t.Errorf("another cache pulled %s, want what was pushed, %s", digestOf(t, got), digestOf(t, img))
	}
}

// TestPushMultiPlatformIndex pushes an image cached for two platforms as
// one index; each platform pulls back its own manifest unchanged.
func TestPushMultiPlatformIndex(t *testing.T) {
	host := memRegistry(t)
	amd, arm := randomImage(t, "amd64", 1), randomImage(t, "arm64", 1)
	c := cacheWith(t, "mobykit/multi:latest", amd, arm)
	p, err := NewResolver(c).Push(context.Background(), "mobykit/multi:latest", host+"/mobykit/multi:latest")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Platforms, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v", p.Platforms)
	}
	for arch, want := range map[string]v1.Image{"amd64": amd, "arm64": arm} {
		fresh, err := OpenCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		got, err := NewResolver(fresh, WithArch(arch)).Resolve(context.Background(), host+"/mobykit/multi:latest")
		if err != nil {
			t.Fatal(err)
		}
		if digestOf(t, got) != digestOf(t, want) {
			t.Errorf("%s: pulled %s, want %s", arch, digestOf(t, got), digestOf(t, want))
		}
	}
}

// authRegistry is an in-memory registry that wants HTTP basic auth.
func authRegistry(t *testing.T, user, pass string) string {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.URL)
	return u.Host
}

func writeDockerConfig(t *testing.T, v string) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

// TestPushWithDockerConfigCredentials pushes with the credentials of
// $DOCKER_CONFIG/config.json, then of a credential helper it names.
func TestPushWithDockerConfigCredentials(t *testing.T) {
	host := authRegistry(t, "alice", "s3cret-pw")
	c := cacheWith(t, "mobykit/auth:1", randomImage(t, "amd64", 1))
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret-pw"))
	writeDockerConfig(t, fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth))
	if _, err := NewResolver(c).Push(context.Background(), "mobykit/auth:1", host+"/mobykit/auth:1"); err != nil {
		t.Fatalf("push with docker config credentials: %v", err)
	}

	bin := t.TempDir()
	helper := "#!/bin/sh\nread host\n" +
		`printf '{"ServerURL":"%s","Username":"alice","Secret":"s3cret-pw"}' "$host"` + "\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-mobykit-test"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	writeDockerConfig(t, fmt.Sprintf(`{"credHelpers": {%q: "mobykit-test"}}`, host))
	if _, err := NewResolver(c).Push(context.Background(), "mobykit/auth:1", host+"/mobykit/auth:2"); err != nil {
		t.Fatalf("push with a credential helper: %v", err)
	}
}

// TestPushRefusedErrorHidesCredentials pushes with wrong credentials: the
// error names the image and the registry, and not the password.
func TestPushRefusedErrorHidesCredentials(t *testing.T) {
	host := authRegistry(t, "alice", "s3cret-pw")
	c := cacheWith(t, "mobykit/auth:1", randomImage(t, "amd64", 1))
	auth := base64.StdEncoding.EncodeToString([]byte("alice:wr0ng-pw"))
	writeDockerConfig(t, fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth))
	_, err := NewResolver(c).Push(context.Background(), "mobykit/auth:1", host+"/mobykit/auth:1")
	if err == nil {
		t.Fatal("push with wrong credentials succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"mobykit/auth", host} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	for _, secret := range []string{"wr0ng-pw", auth} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q shows the credentials", msg)
		}
	}
}

// TestPushNotCachedNamesImage asks to push an image the cache lacks.
func TestPushNotCachedNamesImage(t *testing.T) {
	c := cacheWith(t, "mobykit/here:1", randomImage(t, "amd64", 1))
	_, err := NewResolver(c).Push(context.Background(), "mobykit/absent:1", memRegistry(t)+"/mobykit/absent:1")
	if !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "mobykit/absent:1") {
		t.Fatalf("err = %v, want ErrNotCached naming mobykit/absent:1", err)
	}
}

// TestCacheRmKeepsSharedBlobs removes one of two images sharing layers:
// the other stays complete, the removed one's own blobs and unpacked
// layers go.
func TestCacheRmKeepsSharedBlobs(t *testing.T) {
	base := randomImage(t, "amd64", 2)
	extra, err := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	c := cacheWith(t, "mobykit/base:1", base)
	plat := v1.Platform{OS: "linux", Architecture: "amd64"}
	if _, err := c.Add(pushRef(t, "mobykit/derived:1"), derived, plat, nil); err != nil {
		t.Fatal(err)
	}
	img, _ := c.Lookup(pushRef(t, "mobykit/derived:1"), plat)
	ls, _ := img.Layers()
	cf, _ := img.ConfigFile()
	for i, l := range ls {
		if _, err := c.Unpacked(l, cf.RootFS.DiffIDs[i]); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.Remove("mobykit/derived:1", nil)
	if err != nil || n != 1 {
		t.Fatalf("Remove = %d, %v", n, err)
	}
	if _, ok := c.Lookup(pushRef(t, "mobykit/base:1"), plat); !ok {
		t.Fatal("the image sharing the removed one's layers is no longer complete")
	}
	if _, ok := c.Lookup(pushRef(t, "mobykit/derived:1"), plat); ok {
		t.Fatal("removed image still found")
	}
	ed, _ := extra.Digest()
	if c.hasBlob(ed, -1) || c.hasBlob(digestOf(t, derived), -1) {
		t.Error("the removed image's own layer or manifest blob is still there")
	}
	unpacked, _ := filepath.Glob(filepath.Join(c.Dir(), "unpacked", "*.tar"))
	if len(unpacked) != 2 {
		t.Errorf("unpacked layers left: %d, want base's 2", len(unpacked))
	}
	if _, err := c.Remove("mobykit/derived:1", nil); !errors.Is(err, ErrNotCached) {
		t.Errorf("second Remove: %v, want ErrNotCached", err)
	}
}

func TestRetarget(t *testing.T) {
	for _, tc := range []struct{ ref, reg, want string }{
		{"mobykit/kernel:latest", "127.0.0.1:5000", "127.0.0.1:5000/mobykit/kernel:latest"},
		{"mobykit/kernel:abc", "reg.example.com/team/", "reg.example.com/team/mobykit/kernel:abc"},
		{"mobykit/kernel", "", "index.docker.io/mobykit/kernel:latest"},
		{"ghcr.io/a/b@sha256:" + strings.Repeat("0", 64), "r:1", "r:1/a/b@sha256:" + strings.Repeat("0", 64)},
	} {
		got, err := Retarget(tc.ref, tc.reg)
		if err != nil || got != tc.want {
			t.Errorf("Retarget(%q, %q) = %q, %v; want %q", tc.ref, tc.reg, got, err, tc.want)
		}
	}
	for _, reg := range []string{"https://reg.example.com", "Bad Host"} {
		if _, err := Retarget("mobykit/kernel:1", reg); err == nil {
			t.Errorf("Retarget to %q accepted", reg)
		}
	}
}
