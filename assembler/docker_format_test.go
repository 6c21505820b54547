package assembler

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestDockerFormatLoads: the docker format is a `docker save` archive: go-containerregistry's
// reader of such archives (what `docker load` reads) finds NAME:latest, its config's diff ID is
// the layer's digest, the layer is the root file system, and two builds give the same bytes.
func TestDockerFormatLoads(t *testing.T) {
	f := newFixture(t, memRegistry(t))
	f.build(t, "a", func(o *Options) { o.Formats = []string{"docker"} })
	var stdout bytes.Buffer
	f.build(t, "b", func(o *Options) { o.Formats, o.OutputFile, o.Stdout = []string{"docker"}, "-", &stdout })
	p := filepath.Join(f.dir, "a", "test.docker")
	if !bytes.Equal(mustRead(t, p), stdout.Bytes()) {
		t.Error("two builds (one to stdout) differ")
	}
	tag, _ := name.NewTag("test:latest")
	img, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/init" || cfg.OS != "linux" {
		t.Errorf("config: %+v", cfg)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(rc, h))
	names := map[string]bool{}
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[hd.Name] = true
	}
	io.Copy(io.Discard, tr)
	io.Copy(h, rc)
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != cfg.RootFS.DiffIDs[0].String() {
		t.Errorf("layer digest %s, config says %s", got, cfg.RootFS.DiffIDs[0])
	}
	for _, n := range []string{"bin/busybox", "etc/motd", "containers/services/web/rootfs/bin/web"} {
		if !names[n] {
			t.Errorf("layer lacks %s", n)
		}
	}
	if names["boot/kernel"] {
		t.Error("layer holds the kernel")
	}
}
