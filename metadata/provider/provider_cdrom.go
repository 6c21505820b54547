package provider

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mobykit/mobykit/metadata/config"
	"github.com/mobykit/mobykit/metadata/iso"
)

// Files looked for at the root of a metadata disk, in this order (LinuxKit's): NoCloud's
// user-data, then LinuxKit's single config file; and NoCloud's meta-data.
var cdromUserdataFiles = []string{iso.NoCloudUserdata, iso.LinuxKitFile}

// CDROM reads userdata from a CD-ROM or disk: one labelled cidata/CIDATA/config (ISO9660 or
// FAT), or any /dev/sr* device. The device is mounted read-only on a temporary directory just
// long enough to read the files.
type CDROM struct {
	cfg    Config
	device string
	fstype string

	userdata, metadata []byte
}

// ListCDROMs returns one provider per candidate device: first the block devices whose label
// is one of CDROMLabels, then the remaining CDROMGlob matches (LinuxKit's order).
func ListCDROMs(cfg Config) []Provider {
	var ps []Provider
	for _, d := range cdromDevices(cfg) {
		ps = append(ps, &CDROM{cfg: cfg, device: d.path, fstype: d.fstype})
	}
	return ps
}

type device struct{ path, fstype string }

func cdromDevices(cfg Config) []device {
	var devs []device
	seen := map[string]bool{}
	if cfg.BlockDir != "" {
		entries, err := os.ReadDir(cfg.BlockDir)
		if err != nil {
			slog.Debug("cdrom: cannot list block devices", "dir", cfg.BlockDir, "err", err)
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
				continue
			}
			p := filepath.Join(cfg.DevDir, name)
			fstype, label, err := readLabel(p)
			if err != nil {
				slog.Debug("cdrom: no label", "device", p, "err", err)
				continue
			}
			if slices.Contains(CDROMLabels, label) {
				devs = append(devs, device{p, fstype})
				seen[p] = true
			}
		}
	}
	if cfg.CDROMGlob != "" {
		matches, _ := filepath.Glob(cfg.CDROMGlob) // the pattern is ours and valid
		for _, p := range matches {
			if !seen[p] {
				seen[p] = true
				devs = append(devs, device{p, ""})
			}
		}
	}
	return devs
}

func readLabel(path string) (string, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	return iso.ReadLabel(f)
}

func (p *CDROM) String() string { return "CDROM " + p.device }

// Probe mounts the device and reads user-data (or config) and meta-data from it.
func (p *CDROM) Probe(ctx context.Context) error {
	fstype := p.fstype
	if fstype == "" {
		t, _, err := readLabel(p.device)
		if err != nil {
			return fmt.Errorf("read %s: %w", p.device, err)
		}
		fstype = t
	}
	mnt, err := os.MkdirTemp(p.cfg.MountDir, "metadata-cd")
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	defer os.Remove(mnt)
	if err := p.cfg.Mount(p.device, mnt, fstype); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", p.device, fstype, mnt, err)
	}
	defer func() {
		if err := p.cfg.Unmount(mnt); err != nil {
			slog.Warn("cdrom: unmount", "mountpoint", mnt, "err", err)
		}
	}()
	// A file over the cap is refused, naming the device and file; a missing one is skipped.
	read := func(name string) ([]byte, error) {
		b, err := config.ReadFileMax(filepath.Join(mnt, name), config.MaxData)
		var tl *config.TooLargeError
		if errors.As(err, &tl) {
			tl.Source = p.device + ": " + name
			return nil, fmt.Errorf("metadata CD %w", tl)
		}
		return b, err
	}
	for _, name := range cdromUserdataFiles {
		b, err := read(name)
		if config.IsTooLarge(err) {
			return err
		}
		if err == nil {
			p.userdata = b
			break
		}
	}
	if b, err := read(iso.NoCloudMetadata); config.IsTooLarge(err) {
		return err
	} else if err == nil {
		p.metadata = b
	}
	if p.userdata == nil {
		return fmt.Errorf("%s: no userdata file (looked for %s)", p.device, strings.Join(cdromUserdataFiles, ", "))
	}
	return nil
}

// Extract writes hostname and instance_id from a NoCloud meta-data file, if there is one,
// and returns the userdata.
func (p *CDROM) Extract(_ context.Context, dir *config.Dir) ([]byte, error) {
	var errs []error
	for key, file := range map[string]string{"local-hostname": config.HostnameFile, "instance-id": "instance_id"} {
		if v := nocloudValue(p.metadata, key); v != "" {
			if err := dir.WriteFile(file, []byte(v), 0o644); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return p.userdata, errors.Join(errs...)
}

// nocloudValue reads a top-level "key: value" from NoCloud meta-data (a YAML mapping; the
// simple scalar form is all that is needed for these two keys).
func nocloudValue(meta []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(meta))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return ""
}
