package assembler

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/mobykit/mobykit/assembler/layer"
)

// DefaultBootloader is the image the disk and ISO formats take their bootloaders from, built
// by `mobykit pkg build images/bootloader` from pinned Debian packages.
const DefaultBootloader = "mobykit/bootloader:latest"

// maxBootFile bounds a file read from the bootloader image (they are tens of KB).
const maxBootFile = 16 << 20

// bootloader resolves the bootloader image once, the first time a format asks for a file.
type bootloader struct {
	once sync.Once
	fs   *layer.FS
	done func()
	err  error
}

func (b *builder) bootloaderRef() string {
	if b.o.Bootloader != "" {
		return b.o.Bootloader
	}
	return DefaultBootloader
}

// bootloaderFile returns the file name (a path in the image) of the bootloader image.
func (b *builder) bootloaderFile(ctx context.Context, name string) ([]byte, error) {
	ref := b.bootloaderRef()
	b.boot.once.Do(func() {
		r, err := b.resolveOne(ctx, ref)
		if err != nil {
			b.boot.err = fmt.Errorf("bootloader image %s: %w (build it with `mobykit pkg build images/bootloader`)", ref, err)
			return
		}
		b.boot.fs, b.boot.done, b.boot.err = b.unpacked(r)
	})
	if b.boot.err != nil {
		return nil, b.boot.err
	}
	n := b.boot.fs.Get(name)
	if n == nil || n.Obj == nil {
		return nil, fmt.Errorf("bootloader image %s: no file %s", ref, name)
	}
	if n.Obj.Data.Size > maxBootFile {
		return nil, fmt.Errorf("bootloader image %s: %s is %d bytes, more than a bootloader file can be (%d)", ref, name, n.Obj.Data.Size, maxBootFile)
	}
	return io.ReadAll(n.Obj.Data.Reader())
}

func (b *builder) closeBootloader() {
	if b.boot.done != nil {
		b.boot.done()
	}
}

// resolveOne resolves an image that the spec does not name.
func (b *builder) resolveOne(ctx context.Context, ref string) (*resolved, error) {
	img, err := b.res.ResolveLazy(ctx, ref)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	r := &resolved{ref: ref, img: img, cfg: cfg, digest: d.String()}
	for _, id := range cfg.RootFS.DiffIDs {
		r.diffs = append(r.diffs, id.String())
	}
	return r, nil
}
