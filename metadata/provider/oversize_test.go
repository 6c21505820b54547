package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/metadata/config"
	"github.com/mobykit/mobykit/metadata/iso"
)

// sparse makes path a file of size bytes without writing them.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// runNothing runs set and checks that no provider was taken, that the reasons say why in
// the words of want, and that no userdata was written.
func runNothing(t *testing.T, set Set, want ...string) {
	t.Helper()
	dir, root := openDir(t)
	res, err := Run(context.Background(), set, dir, Options{})
	if !errors.Is(err, ErrNoProvider) || res.Provider != "" {
		t.Fatalf("Run found %q (%d bytes of userdata), err %v; want no provider", res.Provider, len(res.Userdata), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if _, err := os.Stat(filepath.Join(root, config.UserdataFile)); err == nil {
		t.Error("userdata written")
	}
}

var limitWords = fmt.Sprintf("over the %d-byte limit", config.MaxData)

// TestCDROMUserdataOversizeRefused: a metadata CD whose user-data (or meta-data) is larger than
// any provider may hand over is refused, naming the device, the file and the cap, instead of
// being read whole into memory.
func TestCDROMUserdataOversizeRefused(t *testing.T) {
	for _, file := range []string{iso.NoCloudUserdata, iso.LinuxKitFile, iso.NoCloudMetadata} {
		t.Run(file, func(t *testing.T) {
			cfg := devices(t, map[string][]byte{"sr0": isoBytes(t, "cidata", []iso.File{{Name: "user-data", Data: []byte("x")}})})
			cfg.Mount = func(device, target, fstype string) error {
				if file == iso.NoCloudMetadata {
					os.WriteFile(filepath.Join(target, iso.NoCloudUserdata), []byte("small"), 0o644)
				}
				sparse(t, filepath.Join(target, file), config.MaxData+1)
				return nil
			}
			cfg.Unmount = func(target string) error {
				entries, _ := os.ReadDir(target)
				for _, e := range entries {
					os.Remove(filepath.Join(target, e.Name()))
				}
				return nil
			}
			set, err := Parse([]string{"cdrom"}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			runNothing(t, set, cfg.DevDir+"/sr0: "+file, fmt.Sprint(config.MaxData+1), limitWords)
		})
	}
}

// TestFwCfgOversizeRefused: a fw_cfg entry larger than the cap (sysfs gives its size) is refused
// by the provider, naming the entry and the cap. (The I/O-port path, where the size comes from
// the device's directory, is tested in metadata/fwcfg.)
func TestFwCfgOversizeRefused(t *testing.T) {
	root := t.TempDir()
	entry := filepath.Join(root, "by_name", "opt", "com.mobykit", "userdata")
	if err := os.MkdirAll(entry, 0o755); err != nil {
		t.Fatal(err)
	}
	sparse(t, filepath.Join(entry, "raw"), config.MaxData+1)
	runNothing(t, Set{Device: []Provider{NewFwCfg(Config{FwCfgSysfs: root})}}, "fw_cfg entry opt/com.mobykit/userdata", limitWords)
}

// TestFileProviderOversizeRefused: file=PATH naming a file over the cap is not a provider; the
// reason names the file and the cap.
func TestFileProviderOversizeRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ud")
	sparse(t, p, config.MaxData+1)
	set, err := Parse([]string{"file=" + p}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	runNothing(t, set, p, limitWords)
	// Extract on its own (the file grew after Probe) is bounded too.
	if _, err := NewFile(p).Extract(context.Background(), nil); !config.IsTooLarge(err) {
		t.Errorf("Extract of an oversize file: %v", err)
	}
}

// TestHTTPOversizeRefused: the HTTP cap is the same one, with the same error.
func TestHTTPOversizeRefused(t *testing.T) {
	big := strings.Repeat("x", config.MaxData+1)
	for _, chunked := range []bool{false, true} {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !chunked {
				w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			}
			w.Write([]byte(big))
		})
		s := httptest.NewServer(h)
		_, err := getter{client: http.DefaultClient}.get(context.Background(), s.URL+"/latest/user-data")
		s.Close()
		if !config.IsTooLarge(err) || !strings.Contains(err.Error(), "/latest/user-data") {
			t.Errorf("chunked=%v: %v", chunked, err)
		}
	}
}
