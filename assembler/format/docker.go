package format

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

func init() { Register(dockerFormat{}) }

// dockerFormat writes NAME.docker: a `docker save` archive that `docker load` accepts, holding
// one image, NAME:latest, whose single layer is the root file system and whose entrypoint is
// /init. (LinuxKit's docker output is a `docker build` context instead: its tar plus a
// Dockerfile; a loadable archive needs no Docker build step.)
type dockerFormat struct{}

func (dockerFormat) Name() string                { return "docker" }
func (dockerFormat) FileName(name string) string { return name + ".docker" }
func (f dockerFormat) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (dockerFormat) Stream(ctx context.Context, in *Input, w io.Writer) error {
	// The layer's size and digest go before it and into the config, so it is spooled first.
	spool, err := os.CreateTemp(in.Dir, ".docker-layer-*")
	if err != nil {
		return err
	}
	os.Remove(spool.Name())
	defer spool.Close()
	h := sha256.New()
	rootfs := *in
	rootfs.Kernel, rootfs.UCode = "", ""
	if err := (tarFormat{}).Stream(ctx, &rootfs, io.MultiWriter(spool, h)); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	size, err := spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	layerID := hex.EncodeToString(h.Sum(nil))
	created := time.Unix(in.MTime, 0).UTC().Format(time.RFC3339)
	config, err := json.Marshal(map[string]any{
		"architecture": in.Arch,
		"os":           "linux",
		"created":      created,
		"config":       map[string]any{"Entrypoint": []string{"/init"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
		"history":      []map[string]any{{"created": created, "created_by": "mobykit build"}},
	})
	if err != nil {
		return err
	}
	cs := sha256.Sum256(config)
	configName := hex.EncodeToString(cs[:]) + ".json"
	layerName := layerID + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{in.Name + ":latest"}, "Layers": []string{layerName},
	}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	mt := time.Unix(in.MTime, 0)
	if err := tw.WriteHeader(&tar.Header{Name: layerID + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if err := tarAdd(tw, layerName, size, spool, mt); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{configName, config}, {"manifest.json", manifest}} {
		if err := tarAdd(tw, f.name, int64(len(f.data)), bytes.NewReader(f.data), mt); err != nil {
			return err
		}
	}
	return tw.Close()
}
