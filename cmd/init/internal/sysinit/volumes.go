package sysinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// VolumesDir is where the assembler lays out a spec's volumes, in LinuxKit's layout:
// containers/volumes/NAME/lower (the volume's image, or empty), merged (what containers bind)
// and, for a read-write volume only, tmp (where init mounts the tmpfs holding the overlay's
// upper and work dirs).
const VolumesDir = "containers/volumes"

// volume is one volume found under VolumesDir.
type volume struct {
	Name               string
	Lower, Tmp, Merged string
	ReadOnly           bool
}

// findVolumes lists the volumes under root/VolumesDir, as LinuxKit's init does: each folder
// must hold lower/ and merged/; one with tmp/ is read-write, one without is read-only. A
// missing VolumesDir means no volumes.
func findVolumes(root string) ([]volume, error) {
	dir := filepath.Join(root, VolumesDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	var vols []volume
	var errs []error
	for _, e := range entries {
		base := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			errs = append(errs, fmt.Errorf("volume %s: %s is not a folder", e.Name(), base))
			continue
		}
		v := volume{Name: e.Name(), Lower: filepath.Join(base, "lower"), Tmp: filepath.Join(base, "tmp"), Merged: filepath.Join(base, "merged")}
		bad := false
		for _, d := range []string{v.Lower, v.Merged} {
			if st, err := os.Lstat(d); err != nil || !st.IsDir() {
				errs = append(errs, fmt.Errorf("volume %s: %s is missing or not a folder", v.Name, d))
				bad = true
			}
		}
		if bad {
			continue
		}
		st, err := os.Lstat(v.Tmp)
		switch {
		case errors.Is(err, os.ErrNotExist):
			v.ReadOnly = true
		case err != nil || !st.IsDir():
			errs = append(errs, fmt.Errorf("volume %s: %s is not a folder", v.Name, v.Tmp))
			continue
		}
		vols = append(vols, v)
	}
	return vols, errors.Join(errs...)
}

// mounts are the mounts that set a volume up: a read-write volume is an overlay of lower
// with a tmpfs upper (its writes live in memory, the image in lower stays as built); a
// read-only one is lower bound on merged and made read-only, so that nothing, not even a
// container given the whole /containers folder, can write to it.
func (v volume) mounts() []Mount {
	if v.ReadOnly {
		return []Mount{
			{Destination: v.Merged, Source: v.Lower, Options: []string{"rbind"}},
			{Destination: v.Merged, Source: v.Lower, Options: []string{"remount", "bind", "ro"}},
		}
	}
	return []Mount{
		{Destination: v.Tmp, Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=0755"}},
		{Destination: v.Tmp, Options: []string{"remount", "private"}},
		{Destination: v.Merged, Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + v.Lower, "upperdir=" + filepath.Join(v.Tmp, "upper"), "workdir=" + filepath.Join(v.Tmp, "work")}},
	}
}

// MountVolumes mounts every volume under root/VolumesDir before the first container runs,
// and returns the names mounted, with " (ro)" after the read-only ones. A volume that cannot
// be mounted is reported and left out; the others are still mounted.
func MountVolumes(root string) ([]string, error) {
	vols, err := findVolumes(root)
	errs := []error{err}
	var done []string
	for _, v := range vols {
		if err := doMounts(v.mounts()); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.Name, err))
			continue
		}
		name := v.Name
		if v.ReadOnly {
			name += " (ro)"
		}
		done = append(done, name)
	}
	return done, errors.Join(errs...)
}
