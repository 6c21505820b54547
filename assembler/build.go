package assembler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/mobykit/mobykit/assembler/bundle"
	"github.com/mobykit/mobykit/assembler/format"
	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/layer"
	"github.com/mobykit/mobykit/assembler/spec"
)

// Options configure Build. The zero value builds kernel+initrd, gzip, for
// the host architecture, into the current directory, with the default
// cache.
type Options struct {
	// Name is the base name of the outputs; default "mobykit".
	Name string
	// OutputDir receives the outputs; default ".". Created if missing.
	OutputDir string
	// OutputFile, when set, receives the single output of the single format (a
	// format.Streamer) instead of OutputDir; "-" streams it to Stdout. As linuxkit's -o.
	OutputFile string
	// Stdout receives the output when OutputFile is "-".
	Stdout io.Writer
	// Formats to write; default ["kernel+initrd"]. See format.Names.
	Formats []string
	// DiskSize is the size in bytes of the disk formats that take one (--size); 0 sizes
	// each disk to fit its contents.
	DiskSize int64
	// DecompressKernel writes the kernel decompressed (a gzip'ed kernel, or the payload of
	// a bzImage), as linuxkit's --decompress-kernel.
	DecompressKernel bool
	// InputTar is linuxkit's --input-tar, a tar of an earlier build: checked (see Flags), but
	// the segment cache already reuses every unchanged image, so it is not otherwise read.
	InputTar string
	// Bootloader is the image the disk and ISO formats take their bootloaders from; default
	// DefaultBootloader. It is resolved only when such a format is built.
	Bootloader string
	// Arch is the target architecture (amd64, arm64, ...); default the
	// host's. Only that platform of each image is pulled.
	Arch string
	// CacheDir is the image and segment cache; default
	// image.DefaultCacheDir() ($MOBYKIT_CACHE or ~/.mobykit/cache).
	CacheDir string
	// Insecure registries (host[:port]) are reached over plain HTTP.
	// Loopback registries always are.
	Insecure []string
	// Pull asks registries again even for images already cached.
	Pull bool
	// Archives are `docker save` or OCI-layout tarballs imported into the
	// cache before images are resolved.
	Archives []string
	// Compression of the initramfs segments; default gzip.
	Compression initrd.Compression
	// MTime is the time stamp of every entry, in seconds; nil means
	// $SOURCE_DATE_EPOCH if set, else 0 (as LinuxKit).
	MTime *int64
	// BaseDir resolves relative `files: source:` of specs not read from a
	// file; default ".".
	BaseDir string
	// Progress, when set, shows download progress (a terminal).
	Progress io.Writer
	// Transport overrides the HTTP transport used for registries.
	Transport http.RoundTripper
	// Jobs bounds how many segments are written at once; default
	// GOMAXPROCS.
	Jobs int
	// SizeLimit overrides the 4 GiB limit of the uncompressed initramfs
	// (tests use a small one); 0 means initrd.Limit.
	SizeLimit int64
	// MaxLayerSize bounds the uncompressed size of each layer (a gzip
	// bomb is refused as soon as it passes it); 0 means
	// image.DefaultMaxUnpacked (4 GiB).
	MaxLayerSize int64
	// LayerLimits bound the entries and name bytes read from the layers
	// of one image; zero fields take layer's defaults.
	LayerLimits layer.Limits
	// NoSBOM leaves out the merged SBOM (--no-sbom).
	NoSBOM bool
	// SBOMOutput is the path of the merged SBOM in the image; default DefaultSBOMOutput.
	SBOMOutput string
}

// Result describes a finished build.
type Result struct {
	// Outputs are the files written, in format order.
	Outputs []string
	// Kernel is the path of the kernel in the cache ("" without a kernel).
	Kernel string
	// Cmdline is the kernel command line.
	Cmdline string
	// InitrdSize is the size of the compressed initramfs (with microcode);
	// UncompressedSize the size of its cpio data.
	InitrdSize, UncompressedSize int64
	// Segments is the number of cpio segments; Reused of them came from
	// the cache unchanged.
	Segments, Reused int
	// Images maps each reference used to the manifest digest it resolved to.
	Images map[string]string
	// Duration is the wall time of the build.
	Duration time.Duration
}

// BuildFiles loads and merges spec files (see spec.Load) and builds them.
func BuildFiles(ctx context.Context, paths []string, o Options) (*Result, error) {
	m, err := spec.Load(paths...)
	if err != nil {
		return nil, err
	}
	if o.BaseDir == "" && len(paths) > 0 {
		o.BaseDir = filepath.Dir(paths[0])
	}
	return Build(ctx, m, o)
}

// MTimeFromEnv returns $SOURCE_DATE_EPOCH, or 0 when unset.
func MTimeFromEnv() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > 1<<32-1 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a time in seconds", s)
	}
	return v, nil
}

type resolved struct {
	ref    string
	img    v1.Image
	cfg    *v1.ConfigFile
	digest string
	diffs  []string
}

type builder struct {
	o     Options
	m     *spec.Moby
	res   *image.Resolver
	cache *image.Cache
	store *segmentStore
	mtime int64
	limit int64
	imgs  map[string]*resolved

	prefetch errgroup.Group // background downloads of pulled layers
	boot     bootloader
}

// Build assembles m according to o, in named steps (as Cluster API writes its rollouts):
// fill in the defaults, choose the formats, set up the builder, resolve the images, plan the
// initramfs segments, produce them, assemble the initramfs, write the formats.
func Build(ctx context.Context, m *spec.Moby, o Options) (_ *Result, err error) {
	start := time.Now()
	if o, err = withDefaults(o); err != nil {
		return nil, err
	}
	comp, err := initrd.ParseCompression(string(o.Compression))
	if err != nil {
		return nil, err
	}
	formats, stream, err := chooseFormats(o)
	if err != nil {
		return nil, err
	}
	b, err := newBuilder(m, o, comp)
	if err != nil {
		return nil, err
	}
	// Background downloads (see resolveAll) finish before Build returns;
	// after a failure they are cancelled rather than awaited.
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
		b.prefetch.Wait()
		cancel()
	}()
	if err := b.resolve(ctx, start); err != nil {
		return nil, err
	}
	ucode, kernelPath, segs, err := b.plan()
	if err != nil {
		return nil, err
	}
	res := b.newResult(kernelPath, segs)
	files, err := b.produceSegments(ctx, segs, res)
	if err != nil {
		return nil, err
	}
	in, err := b.assemble(ucode, kernelPath, files, res)
	if in != nil {
		defer os.Remove(in.Initrd)
	}
	if err != nil {
		return nil, err
	}
	defer b.closeBootloader()
	if err := b.writeFormats(ctx, formats, stream, in, res); err != nil {
		return res, err
	}
	res.Duration = time.Since(start)
	slog.Debug("build done", "segments", res.Segments, "reused", res.Reused, "seconds", res.Duration.Seconds())
	return res, nil
}

// withDefaults checks the output name and fills in what o leaves out.
func withDefaults(o Options) (Options, error) {
	if o.Name == "" {
		o.Name = "mobykit"
	}
	if strings.ContainsAny(o.Name, "/\x00") || o.Name == "." || o.Name == ".." {
		return o, fmt.Errorf("output name %q: must be a plain file name", o.Name)
	}
	if o.OutputDir == "" {
		o.OutputDir = "."
	}
	if len(o.Formats) == 0 {
		o.Formats = []string{"kernel+initrd"}
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.GOMAXPROCS(0)
	}
	if o.BaseDir == "" {
		o.BaseDir = "."
	}
	return o, nil
}

// chooseFormats looks the formats up; with an output file (-o FILE, -o -) it returns the one
// streamer that writes it.
func chooseFormats(o Options) ([]format.Format, format.Streamer, error) {
	var formats []format.Format
	for _, n := range o.Formats {
		f, err := format.Lookup(n)
		if err != nil {
			return nil, nil, err
		}
		formats = append(formats, f)
	}
	if o.OutputFile == "" {
		return formats, nil, nil
	}
	s, ok := formats[0].(format.Streamer)
	switch {
	case len(formats) != 1:
		return nil, nil, fmt.Errorf("output file %s: takes a single format, not %d", o.OutputFile, len(formats))
	case !ok:
		return nil, nil, fmt.Errorf("output file %s: format %s writes several files", o.OutputFile, formats[0].Name())
	case o.OutputFile == "-" && o.Stdout == nil:
		return nil, nil, errors.New("output file -: no Stdout to stream to")
	}
	return formats, s, nil
}

// newBuilder opens the cache and sets up the resolver and the segment store.
func newBuilder(m *spec.Moby, o Options, comp initrd.Compression) (*builder, error) {
	b := &builder{o: o, m: m, limit: o.SizeLimit}
	if b.limit <= 0 {
		b.limit = initrd.Limit
	}
	var err error
	if o.MTime != nil {
		b.mtime = *o.MTime
	} else if b.mtime, err = MTimeFromEnv(); err != nil {
		return nil, err
	}
	if b.cache, err = image.OpenCache(o.CacheDir); err != nil {
		return nil, err
	}
	b.cache.SetMaxUnpacked(o.MaxLayerSize)
	ropts := []image.Option{image.WithArch(o.Arch), image.WithInsecure(o.Insecure...), image.WithPull(o.Pull)}
	if o.Transport != nil {
		ropts = append(ropts, image.WithTransport(o.Transport))
	}
	if o.Progress != nil {
		ropts = append(ropts, image.WithProgress(o.Progress))
	}
	b.res = image.NewResolver(b.cache, ropts...)
	b.store = &segmentStore{dir: filepath.Join(b.cache.Dir(), "segments"), comp: comp, mtime: b.mtime, limit: b.limit}
	return b, nil
}

// resolve imports the --input-tar archives, then resolves every image of the spec.
func (b *builder) resolve(ctx context.Context, start time.Time) error {
	for _, a := range b.o.Archives {
		refs, err := b.cache.Import(a)
		if err != nil {
			return err
		}
		slog.Info("imported", "archive", a, "images", refs)
	}
	if err := b.resolveAll(ctx); err != nil {
		return err
	}
	slog.Debug("images resolved", "images", len(b.imgs), "seconds", time.Since(start).Seconds())
	return nil
}

func (b *builder) newResult(kernelPath string, segs []*segment) *Result {
	res := &Result{Kernel: kernelPath, Cmdline: b.m.Kernel.Cmdline, Segments: len(segs), Images: map[string]string{}}
	for r, i := range b.imgs {
		res.Images[r] = i.digest
	}
	return res
}

// produceSegments builds (or reuses) every segment and returns their files in order, refusing
// an initramfs larger than the limit.
func (b *builder) produceSegments(ctx context.Context, segs []*segment, res *Result) ([]string, error) {
	if err := b.produce(ctx, segs); err != nil {
		return nil, err
	}
	var files []string
	for _, s := range segs {
		res.UncompressedSize += s.size
		if s.reused {
			res.Reused++
		}
		files = append(files, s.file)
	}
	if res.UncompressedSize > b.limit {
		return nil, fmt.Errorf("initramfs of %d bytes: %w", res.UncompressedSize, initrd.ErrTooLarge)
	}
	return files, nil
}

// assemble concatenates the microcode and the segments into a temporary initramfs in the
// output directory and returns what the formats are given. The caller removes in.Initrd; in
// is non-nil once that file exists, even with an error.
func (b *builder) assemble(ucode, kernelPath string, files []string, res *Result) (*format.Input, error) {
	o := b.o
	outDir := o.OutputDir
	switch o.OutputFile {
	case "":
	case "-":
		outDir = filepath.Join(b.cache.Dir(), "tmp")
	default:
		outDir = filepath.Dir(o.OutputFile)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	outDir, err := filepath.Abs(outDir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(outDir, "."+o.Name+"-initrd-*")
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	in := &format.Input{
		Name: o.Name, Dir: outDir, Kernel: kernelPath, Cmdline: b.m.Kernel.Cmdline,
		Initrd: tmp.Name(), UCode: ucode, Segments: files, Arch: o.Arch, MTime: b.mtime,
		DiskSize: o.DiskSize, Bootloader: b.bootloaderFile,
	}
	parts := files
	if ucode != "" {
		parts = append([]string{ucode}, files...)
	}
	for _, p := range parts {
		if err := appendFile(tmp, p); err != nil {
			tmp.Close()
			return in, fmt.Errorf("assemble initramfs: %w", err)
		}
	}
	if err := tmp.Close(); err != nil {
		return in, err
	}
	if st, err := os.Stat(tmp.Name()); err == nil {
		res.InitrdSize = st.Size()
	}
	return in, nil
}

// writeFormats streams the one output file, or has every format write its outputs.
func (b *builder) writeFormats(ctx context.Context, formats []format.Format, stream format.Streamer, in *format.Input, res *Result) error {
	if stream != nil {
		if err := b.writeStream(ctx, stream, in); err != nil {
			return err
		}
		if b.o.OutputFile != "-" {
			res.Outputs = append(res.Outputs, b.o.OutputFile)
		}
		return nil
	}
	for _, f := range formats {
		out, err := f.Write(ctx, in)
		res.Outputs = append(res.Outputs, out...)
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) writeStream(ctx context.Context, s format.Streamer, in *format.Input) error {
	if b.o.OutputFile == "-" {
		if err := s.Stream(ctx, in, b.o.Stdout); err != nil {
			return fmt.Errorf("%s to stdout: %w", s.Name(), err)
		}
		return nil
	}
	if err := format.WriteFile(b.o.OutputFile, 0o644, func(w io.Writer) error { return s.Stream(ctx, in, w) }); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	return nil
}

func appendFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// resolveAll resolves every image. Images already cached are ready; the
// others are returned as soon as their manifest and config are stored, and
// their layers download and unpack in the background (b.prefetch) while
// the build goes on: whoever needs a layer first waits for it, and a layer
// is never fetched twice.
func (b *builder) resolveAll(ctx context.Context) error {
	refs := b.m.ImageRefs()
	users := b.imageUsers()
	out := make([]*resolved, len(refs))
	var pulled []*resolved
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(8) // mostly waiting on the network
	for i, r := range refs {
		g.Go(func() error {
			cached := false
			if pr, err := b.res.ParseReference(r); err == nil && !b.o.Pull {
				_, cached = b.cache.Lookup(pr, b.res.Platform())
			}
			// ctx, not a group context: lazy layers are read after Wait.
			img, err := b.res.ResolveLazy(ctx, r)
			if err != nil {
				return fmt.Errorf("%s: %w", users[r], err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				return fmt.Errorf("image %s: config: %w", r, err)
			}
			d, err := img.Digest()
			if err != nil {
				return fmt.Errorf("image %s: %w", r, err)
			}
			rv := &resolved{ref: r, img: img, cfg: cfg, digest: d.String()}
			for _, id := range cfg.RootFS.DiffIDs {
				rv.diffs = append(rv.diffs, id.String())
			}
			out[i] = rv
			if !cached {
				mu.Lock()
				pulled = append(pulled, rv)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	b.imgs = map[string]*resolved{}
	for _, r := range out {
		b.imgs[r.ref] = r
	}
	b.prefetch.SetLimit(4)
	for _, r := range pulled {
		layers, err := r.img.Layers()
		if err != nil {
			return fmt.Errorf("image %s: %w", r.ref, err)
		}
		for j, l := range layers {
			if j >= len(r.cfg.RootFS.DiffIDs) {
				break
			}
			diffID := r.cfg.RootFS.DiffIDs[j]
			b.prefetch.Go(func() error {
				// Errors show again, with context, when the layer is used.
				if _, err := b.cache.Unpacked(l, diffID); err != nil {
					slog.Debug("prefetch failed", "image", r.ref, "layer", j, "err", err)
				}
				return nil
			})
		}
	}
	return nil
}

// refName is the normalised reference used to recognise the same image
// used twice.
func refName(r string) string {
	if pr, err := name.ParseReference(r); err == nil {
		return pr.Name()
	}
	return r
}

// unpacked flattens an image's layers; the returned closer releases the
// layer files the nodes read from.
func (b *builder) unpacked(r *resolved) (*layer.FS, func(), error) {
	layers, err := r.img.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", r.ref, err)
	}
	if len(layers) != len(r.cfg.RootFS.DiffIDs) {
		return nil, nil, fmt.Errorf("image %s: %d layers but %d diff IDs in its config", r.ref, len(layers), len(r.cfg.RootFS.DiffIDs))
	}
	fs := layer.NewWithLimits(b.o.LayerLimits)
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for i, l := range layers {
		p, err := b.cache.Unpacked(l, r.cfg.RootFS.DiffIDs[i])
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("image %s layer %d: %w", r.ref, i, err)
		}
		f, err := os.Open(p)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		files = append(files, f)
		st, err := f.Stat()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if err := fs.Apply(fmt.Sprintf("image %s layer %d", r.ref, i), f, st.Size()); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	return fs, closeAll, nil
}

func bytesObject(s string) *layer.Object {
	return &layer.Object{Data: layer.Data{R: strings.NewReader(s), Size: int64(len(s))}}
}

// imageSegment is a segment holding an image's root filesystem under
// prefix, with LinuxKit's fixups.
func (b *builder) imageSegment(what, prefix string, r *resolved, resolv string) *segment {
	key := keyOf(append([]string{"image", prefix, resolv}, r.diffs...)...)
	return &segment{what: what, key: key, write: func(cw *initrd.Writer) error {
		fs, done, err := b.unpacked(r)
		if err != nil {
			return err
		}
		defer done()
		if err := fixups(fs, resolv, bytesObject); err != nil {
			return fmt.Errorf("image %s: %w", r.ref, err)
		}
		fs.AddMissingParents()
		var ino uint32
		return writeNodes(cw, prefix, fs.Nodes(), &ino)
	}}
}

// plan lists the segments of the initramfs in LinuxKit's order.
func (b *builder) plan() (ucode, kernel string, segs []*segment, err error) {
	m := b.m
	if m.Kernel.Image != "" {
		var ks *segment
		kernel, ucode, ks, err = b.kernel()
		if err != nil {
			return "", "", nil, err
		}
		segs = append(segs, ks)
	}
	for i, r := range m.Init {
		segs = append(segs, b.imageSegment(fmt.Sprintf("init[%d] %s", i, r), "", b.imgs[r], resolvSymlink))
	}
	if len(m.Init) > 1 {
		s, err := b.apkDB()
		if err != nil {
			return "", "", nil, err
		}
		if s != nil {
			segs = append(segs, s)
		}
	}
	meta := layer.New()
	for i, v := range m.Volumes {
		base := path.Join("containers/volumes", v.Name)
		if v.Format != "" && v.Format != "filesystem" {
			return "", "", nil, fmt.Errorf("volumes[%d] %s: format %q is not supported (only filesystem)", i, v.Name, v.Format)
		}
		if v.Image != "" {
			segs = append(segs, b.imageSegment(fmt.Sprintf("volume %s", v.Name), base+"/lower/", b.imgs[v.Image], ""))
		} else if err := putDir(meta, base+"/lower"); err != nil {
			return "", "", nil, fmt.Errorf("volumes[%d] %s: %w", i, v.Name, err)
		}
		// LinuxKit's layout, which init reads at boot: tmp/ (the mount point of the tmpfs
		// holding the overlay's upper and work dirs) only for a read-write volume; a volume
		// without it is mounted read-only.
		dirs := []string{"tmp", "merged"}
		if v.ReadOnly {
			dirs = []string{"merged"}
		}
		for _, d := range dirs {
			if err := putDir(meta, base+"/"+d); err != nil {
				return "", "", nil, fmt.Errorf("volumes[%d] %s: %w", i, v.Name, err)
			}
		}
	}
	dup := map[string]string{}
	sections := []struct {
		name   string
		images []*spec.Image
		index  bool
	}{{"onboot", m.Onboot, true}, {"onshutdown", m.Onshutdown, true}, {"services", m.Services, false}}
	for _, sec := range sections {
		for i, img := range sec.images {
			dir := path.Join("containers", sec.name, img.Name)
			if sec.index {
				dir = path.Join("containers", sec.name, fmt.Sprintf("%03d-%s", i, img.Name))
			}
			s, err := b.container(meta, sec.name, i, img, dir, dup)
			if err != nil {
				return "", "", nil, err
			}
			if s != nil {
				segs = append(segs, s)
			}
		}
	}
	entries, err := m.FileEntries(b.o.BaseDir)
	if err != nil {
		return "", "", nil, err
	}
	for _, e := range entries {
		n := &layer.Node{Name: e.Path, UID: uint32(e.UID), GID: uint32(e.GID)}
		switch {
		case e.Directory:
			n.Mode = fstree.TypeDir | e.Mode&0o7777
		case e.Symlink != "":
			n.Mode = fstree.TypeSymlink | 0o777
			n.Linkname = e.Symlink
		default:
			n.Mode = fstree.TypeReg | e.Mode&0o7777
			n.Obj = &layer.Object{Data: layer.Data{R: bytes.NewReader(e.Contents), Size: int64(len(e.Contents))}}
		}
		if old := meta.Get(e.Path); old != nil && old.IsDir() && n.IsDir() && e.Implicit {
			continue
		}
		if err := meta.Put(n); err != nil {
			return "", "", nil, fmt.Errorf("files: %s: %w", e.Path, err)
		}
	}
	if meta.Len() > 0 {
		ms, err := memSegment("generated files", b.mtime, b.limit, func(cw *initrd.Writer) error {
			var ino uint32
			return writeNodes(cw, "", meta.Nodes(), &ino)
		})
		if err != nil {
			return "", "", nil, err
		}
		segs = append(segs, ms)
	}
	if !b.o.NoSBOM {
		ss, err := b.sbomSegment()
		if err != nil {
			return "", "", nil, err
		}
		segs = append(segs, ss)
	}
	return ucode, kernel, segs, nil
}

func putDir(fs *layer.FS, name string) error {
	if err := putParents(fs, name); err != nil {
		return err
	}
	return fs.Put(&layer.Node{Name: name, Mode: fstree.TypeDir | 0o755})
}

func putFile(fs *layer.FS, name string, data []byte) error {
	if err := putParents(fs, name); err != nil {
		return err
	}
	return fs.Put(&layer.Node{Name: name, Mode: fstree.TypeReg | 0o644, Obj: &layer.Object{Data: layer.Data{R: bytes.NewReader(data), Size: int64(len(data))}}})
}

// putParents adds every missing ancestor folder of name to fs. The kernel's initramfs unpacker
// creates no missing parents: an entry whose folder was not written first, in this segment or an
// earlier one, is silently dropped. The generated-files segment cannot know which folders other
// segments write (a container sharing another's root has no segment of its own), so it writes
// its own; a folder written twice is harmless.
func putParents(fs *layer.FS, name string) error {
	for d := path.Dir(name); d != "." && d != "/" && d != ""; d = path.Dir(d) {
		if fs.Get(d) == nil {
			if err := fs.Put(&layer.Node{Name: d, Mode: fstree.TypeDir | 0o755}); err != nil {
				return err
			}
		}
	}
	return nil
}

// container plans one onboot/onshutdown/service bundle: its root
// filesystem segment (nil when the same image was unpacked already) and its
// config.json, runtime.json and mount points in meta.
func (b *builder) container(meta *layer.FS, section string, i int, img *spec.Image, dir string, dup map[string]string) (*segment, error) {
	where := fmt.Sprintf("%s[%d] %s", section, i, img.Name)
	r := b.imgs[img.Image]
	if r == nil {
		return nil, fmt.Errorf("%s: image %s was not resolved", where, img.Image)
	}
	key := refName(img.Image)
	bd, err := bundle.Generate(img, r.cfg.Config, bundle.Options{
		Path: dir, SharedRoot: dup[key], IDMap: b.m.IDMap(), Volumes: b.m.VolumeMap(),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var seg *segment
	if bd.RootDir != "" {
		seg = b.imageSegment(where, bd.RootDir+"/", r, "")
		dup[key] = bd.RootDir
	} else if err := putDir(meta, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := putFile(meta, path.Join(dir, "config.json"), bd.Config); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	for _, d := range bd.Dirs {
		if err := putDir(meta, d); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	if err := putFile(meta, path.Join(dir, "runtime.json"), bd.Runtime); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return seg, nil
}

// produce writes every segment that is not cached, in parallel.
func (b *builder) produce(ctx context.Context, segs []*segment) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.o.Jobs)
	for _, s := range segs {
		if b.store.lookup(s) {
			slog.Debug("segment reused", "what", s.what)
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			t := time.Now()
			if err := b.store.produce(s); err != nil {
				return err
			}
			slog.Debug("segment written", "what", s.what, "bytes", s.size, "seconds", time.Since(t).Seconds())
			return nil
		})
	}
	return g.Wait()
}

// apkInstalled is Alpine's database of installed packages.
const apkInstalled = "lib/apk/db/installed"

// apkDB merges the package databases of the init images, as LinuxKit's
// apkTarWriter does when more than one init image has one: each database
// followed by two newlines, in init order, written after the init images.
func (b *builder) apkDB() (*segment, error) {
	var dbs [][]byte
	for _, r := range b.m.Init {
		fs, done, err := b.unpacked(b.imgs[r])
		if err != nil {
			return nil, err
		}
		if n := fs.Get(apkInstalled); n != nil && n.Obj != nil {
			data, err := io.ReadAll(n.Obj.Data.Reader())
			if err != nil {
				done()
				return nil, fmt.Errorf("image %s: %s: %w", r, apkInstalled, err)
			}
			dbs = append(dbs, data)
		}
		done()
	}
	if len(dbs) < 2 {
		return nil, nil
	}
	var all []byte
	for _, db := range dbs {
		all = append(append(all, db...), '\n', '\n')
	}
	return memSegment("merged apk database", b.mtime, b.limit, func(cw *initrd.Writer) error {
		if err := cw.WriteHeader(&initrd.Header{Name: apkInstalled, Mode: fstree.TypeReg | 0o644, Size: int64(len(all))}); err != nil {
			return err
		}
		_, err := cw.Write(all)
		return err
	})
}

// imageUsers names, for each image reference, where the spec first uses
// it ("onboot[0] sysctl"), for error messages.
func (b *builder) imageUsers() map[string]string {
	u := map[string]string{}
	add := func(ref, where string) {
		if _, ok := u[ref]; !ok {
			u[ref] = where
		}
	}
	m := b.m
	if m.Kernel.Image != "" {
		add(m.Kernel.Image, "kernel")
	}
	for i, r := range m.Init {
		add(r, fmt.Sprintf("init[%d]", i))
	}
	for _, sec := range []struct {
		name string
		imgs []*spec.Image
	}{{"onboot", m.Onboot}, {"onshutdown", m.Onshutdown}, {"services", m.Services}} {
		for i, img := range sec.imgs {
			add(img.Image, fmt.Sprintf("%s[%d] %s", sec.name, i, img.Name))
		}
	}
	for i, v := range m.Volumes {
		if v.Image != "" {
			add(v.Image, fmt.Sprintf("volumes[%d] %s", i, v.Name))
		}
	}
	return u
}
