package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mobykit/mobykit/metadata/config"
)

// Provider is one source of metadata and userdata.
type Provider interface {
	// String names the provider; it is written to /run/config/provider (LinuxKit's names:
	// "AWS", "GCP", "openstack", "Hetzner", "DigitalOcean", "Vultr", "Scaleway", "EquinixMetal",
	// "CDROM /dev/sr0", the file's path...).
	String() string
	// Probe returns nil if the provider is present, or why it is not.
	Probe(ctx context.Context) error
	// Extract writes the provider's metadata (hostname, addresses, ssh keys...) into dir and
	// returns the generic userdata, or nil if the provider has none.
	Extract(ctx context.Context, dir *config.Dir) ([]byte, error)
}

// Endpoints are the base URLs of the network providers, without a trailing slash.
type Endpoints struct {
	AWS          string // default http://169.254.169.254
	GCP          string // default http://metadata.google.internal
	OpenStack    string // default http://169.254.169.254
	Hetzner      string // default http://169.254.169.254
	DigitalOcean string // default http://169.254.169.254
	Vultr        string // default http://169.254.169.254
	Scaleway     string // default http://169.254.42.42
	Packet       string // default https://metadata.packet.net
	EquinixMetal string // default https://metadata.platformequinix.com
}

// Config holds everything a provider reaches outside itself. DefaultConfig gives the real
// endpoints and device paths; tests replace them.
type Config struct {
	Endpoints Endpoints
	// Timeout bounds each HTTP request and each device probe. Default 2s (LinuxKit's).
	Timeout time.Duration
	// Client is used for HTTP requests; nil means a client with Timeout.
	Client *http.Client

	// CDROMGlob matches the devices always tried as CD-ROMs (default /dev/sr[0-9]*).
	CDROMGlob string
	// BlockDir lists block devices (default /sys/class/block); DevDir holds their nodes
	// (default /dev). Devices whose ISO9660/FAT label is one of CDROMLabels are tried too.
	BlockDir, DevDir string
	// Mount mounts a device read-only on target with the given file system type; Unmount
	// undoes it. Defaults use mount(2) and umount(2).
	Mount   func(device, target, fstype string) error
	Unmount func(target string) error
	// MountDir is where temporary mount points are made (default os.TempDir()).
	MountDir string

	// FwCfgSysfs is the qemu_fw_cfg sysfs root (default /sys/firmware/qemu_fw_cfg), DMIDir
	// the DMI id directory consulted before using fw_cfg I/O ports (default
	// /sys/class/dmi/id; empty disables the port fallback), FwCfgName the entry read
	// (default fwcfg.UserdataName).
	FwCfgSysfs, DMIDir, FwCfgName string
}

// CDROMLabels are the volume labels that mark a metadata disk: NoCloud's "cidata" (either
// case) and "config", the label LinuxKit's `linuxkit metadata create` gives its ISO.
var CDROMLabels = []string{"cidata", "CIDATA", "config", "CONFIG"}

// DefaultConfig returns the real endpoints and device locations.
func DefaultConfig() Config {
	return Config{
		Endpoints: Endpoints{
			AWS:          "http://169.254.169.254",
			GCP:          "http://metadata.google.internal",
			OpenStack:    "http://169.254.169.254",
			Hetzner:      "http://169.254.169.254",
			DigitalOcean: "http://169.254.169.254",
			Vultr:        "http://169.254.169.254",
			Scaleway:     "http://169.254.42.42",
			Packet:       "https://metadata.packet.net",
			EquinixMetal: "https://metadata.platformequinix.com",
		},
		Timeout:    2 * time.Second,
		CDROMGlob:  "/dev/sr[0-9]*",
		BlockDir:   "/sys/class/block",
		DevDir:     "/dev",
		Mount:      mountReadOnly,
		Unmount:    unmount,
		FwCfgSysfs: "/sys/firmware/qemu_fw_cfg",
		DMIDir:     "/sys/class/dmi/id",
	}
}

func (c Config) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 2 * time.Second
	}
	return c.Timeout
}

func (c Config) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return &http.Client{Timeout: c.timeout()}
}

// DefaultNames is the probe list used when none is given: LinuxKit's default order (its
// pkg/metadata/main.go: aws gcp hetzner openstack scaleway vultr digitalocean equinixmetal
// metaldata vmware cdrom) without the two providers mobykit does not have (metaldata,
// vmware), then QEMU fw_cfg. Files are only probed when named ("file=PATH").
var DefaultNames = []string{"aws", "gcp", "hetzner", "openstack", "scaleway", "vultr", "digitalocean", "equinixmetal", "cdrom", "fwcfg"}

// Set is a probe plan: network providers first, then devices, then files (LinuxKit's three
// lists).
type Set struct {
	Network, Device, File []Provider
}

// Parse turns provider names (DefaultNames if names is empty) into a Set. Names: aws, gcp,
// hetzner, openstack, scaleway, vultr, digitalocean, equinixmetal, packet (the name older
// LinuxKit used for Equinix Metal, at its old host), cdrom, fwcfg (or fw_cfg), file=PATH.
func Parse(names []string, cfg Config) (Set, error) {
	if len(names) == 0 {
		names = DefaultNames
	}
	var s Set
	for _, n := range names {
		switch {
		case n == "aws":
			s.Network = append(s.Network, NewAWS(cfg))
		case n == "gcp":
			s.Network = append(s.Network, NewGCP(cfg))
		case n == "hetzner":
			s.Network = append(s.Network, NewHetzner(cfg))
		case n == "openstack":
			s.Network = append(s.Network, NewOpenStack(cfg))
		case n == "scaleway":
			s.Network = append(s.Network, NewScaleway(cfg))
		case n == "vultr":
			s.Network = append(s.Network, NewVultr(cfg))
		case n == "digitalocean":
			s.Network = append(s.Network, NewDigitalOcean(cfg))
		case n == "packet":
			s.Network = append(s.Network, NewPacket(cfg))
		case n == "equinixmetal":
			s.Network = append(s.Network, NewEquinixMetal(cfg))
		case n == "cdrom":
			s.Device = append(s.Device, ListCDROMs(cfg)...)
		case n == "fwcfg" || n == "fw_cfg":
			s.Device = append(s.Device, NewFwCfg(cfg))
		case strings.HasPrefix(n, "file="):
			if n == "file=" {
				return Set{}, fmt.Errorf("provider %q: file= needs a path", n)
			}
			s.File = append(s.File, NewFile(n[len("file="):]))
		default:
			return Set{}, fmt.Errorf("unrecognised metadata provider %q (known: %s, packet, file=PATH)", n, strings.Join(DefaultNames, ", "))
		}
	}
	return s, nil
}

// ErrNoProvider is returned (wrapped, with every provider's reason) when nothing answered.
var ErrNoProvider = errors.New("no metadata/userdata provider found")

// Options tune Run.
type Options struct {
	// SetHostname is called with the content of /run/config/hostname, if that file exists
	// after extraction; nil skips setting it (tests). The agent passes syscall.Sethostname.
	SetHostname func([]byte) error
}

// Result says what Run found.
type Result struct {
	Provider string
	Userdata []byte // nil if the provider had none
	Hostname string // "" if none was written
}

// Run finds the first provider of set that is present, lets it extract into dir, writes
// "provider", processes the userdata (raw copy plus JSON expansion) and sets the hostname.
// Errors from a found provider's extraction and from the userdata expansion are logged and
// returned joined, after everything that could be written was written; if no provider is
// found the error wraps ErrNoProvider and says why each one failed.
func Run(ctx context.Context, set Set, dir *config.Dir, opts Options) (Result, error) {
	var reasons []error
	p := probeNetwork(ctx, set.Network, &reasons)
	if p == nil {
		for _, group := range [][]Provider{set.Device, set.File} {
			for _, c := range group {
				slog.Info("trying metadata provider", "provider", c.String())
				if err := c.Probe(ctx); err != nil {
					reasons = append(reasons, fmt.Errorf("%s: %w", c, err))
					continue
				}
				p = c
				break
			}
			if p != nil {
				break
			}
		}
	}
	if p == nil {
		if len(reasons) == 0 {
			return Result{}, fmt.Errorf("%w: no providers to try", ErrNoProvider)
		}
		return Result{}, fmt.Errorf("%w; tried: %w", ErrNoProvider, errors.Join(reasons...))
	}
	slog.Info("metadata provider found", "provider", p.String())

	var errs []error
	userdata, err := p.Extract(ctx, dir)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: extract: %w", p, err))
	}
	if err := dir.WriteFile(config.ProviderFile, []byte(p.String()), 0o644); err != nil {
		errs = append(errs, err)
	}
	if userdata != nil {
		if err := dir.ProcessUserdata(userdata); err != nil {
			errs = append(errs, err)
		}
	}
	res := Result{Provider: p.String(), Userdata: userdata}
	if h, err := dir.ReadFile(config.HostnameFile); err == nil && len(bytes.TrimSpace(h)) > 0 {
		// The file keeps what the source said; the kernel gets it without surrounding
		// whitespace (a trailing newline is common in userdata and metadata answers).
		h = bytes.TrimSpace(h)
		res.Hostname = string(h)
		if opts.SetHostname != nil {
			if err := opts.SetHostname(h); err != nil {
				errs = append(errs, fmt.Errorf("set hostname %q: %w", h, err))
			} else {
				slog.Info("set hostname", "hostname", string(h))
			}
		}
	}
	for _, e := range errs {
		slog.Warn("metadata", "err", e)
	}
	return res, errors.Join(errs...)
}

// probeNetwork probes all providers concurrently and returns the first, in list order, that
// is present, as soon as every provider before it has failed.
func probeNetwork(ctx context.Context, ps []Provider, reasons *[]error) Provider {
	if len(ps) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	ch := make(chan result, len(ps))
	for i, p := range ps {
		go func() { ch <- result{i, p.Probe(ctx)} }()
	}
	done := make([]bool, len(ps))
	errs := make([]error, len(ps))
	next := 0
	for range ps {
		r := <-ch
		done[r.i], errs[r.i] = true, r.err
		for next < len(ps) && done[next] {
			if errs[next] == nil {
				for i := 0; i < next; i++ {
					*reasons = append(*reasons, fmt.Errorf("%s: %w", ps[i], errs[i]))
				}
				return ps[next]
			}
			next++
		}
	}
	for i, p := range ps {
		*reasons = append(*reasons, fmt.Errorf("%s: %w", p, errs[i]))
	}
	return nil
}
