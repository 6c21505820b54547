package bundle

import (
	"errors"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/spec"
)

// ConfigLabel is the image label holding default per-image config.
const ConfigLabel = "org.mobyproject.config"

// Bundle is the generated bundle metadata of one container.
type Bundle struct {
	// Config is the OCI runtime config.json.
	Config []byte
	// Runtime is LinuxKit's runtime.json.
	Runtime []byte
	// ReadOnly reports whether the root is read-only: the image is
	// unpacked into rootfs/; otherwise into lower/ with tmp/ for the overlay.
	ReadOnly bool
}

// Options tune Generate.
type Options struct {
	// Volumes maps a volume name from the spec to its definition, for binds
	// and mounts that refer to volumes by name.
	Volumes map[string]*spec.Volume
}

// Generate builds config.json and runtime.json for img.
func Generate(img *spec.Image, imgCfg v1.Config, opts Options) (*Bundle, error) {
	return nil, errors.New("bundle.Generate: not implemented yet")
}
