package bundle

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/spec"
)

// Effective returns img with every field its image supplies made explicit:
// the org.mobyproject.config label under the YAML (binds.add and
// capabilities.add folded into binds and capabilities), and command, env and
// cwd from the image config. It is what --dry-run shows once images are
// resolved; generating a bundle from the result with an image config that
// has no label gives the same config.json.
func Effective(img *spec.Image, imgCfg v1.Config) (*spec.Image, error) {
	label, err := Label(img.Image, imgCfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", describe(img), err)
	}
	y := &img.ImageConfig
	out := *img
	c := &out.ImageConfig
	c.Capabilities = merged(label.Capabilities, y.CapabilitiesAdd)
	if y.Capabilities != nil {
		c.Capabilities = y.Capabilities
	}
	c.CapabilitiesAdd = nil
	c.Binds = merged(label.Binds, y.BindsAdd)
	if y.Binds != nil {
		c.Binds = y.Binds
	}
	c.BindsAdd = nil
	c.Ambient = pick(label.Ambient, y.Ambient)
	c.Mounts = pick(label.Mounts, y.Mounts)
	c.Devices = pick(label.Devices, y.Devices)
	c.Tmpfs = pick(label.Tmpfs, y.Tmpfs)
	c.Command = pick(label.Command, y.Command)
	if c.Command == nil && len(imgCfg.Entrypoint)+len(imgCfg.Cmd) > 0 {
		args := append(append([]string(nil), imgCfg.Entrypoint...), imgCfg.Cmd...)
		c.Command = &args
	}
	c.Env = pick(label.Env, y.Env)
	if c.Env == nil && imgCfg.Env != nil {
		env := append([]string(nil), imgCfg.Env...)
		c.Env = &env
	}
	c.Cwd = str(label.Cwd, y.Cwd, imgCfg.WorkingDir)
	c.Net = str(label.Net, y.Net, "")
	c.Pid = str(label.Pid, y.Pid, "")
	c.Ipc = str(label.Ipc, y.Ipc, "")
	c.Uts = str(label.Uts, y.Uts, "")
	c.Userns = str(label.Userns, y.Userns, "")
	c.Hostname = str(label.Hostname, y.Hostname, "")
	c.Readonly = pick(label.Readonly, y.Readonly)
	c.MaskedPaths = pick(label.MaskedPaths, y.MaskedPaths)
	c.ReadonlyPaths = pick(label.ReadonlyPaths, y.ReadonlyPaths)
	c.UID = pick(label.UID, y.UID)
	c.GID = pick(label.GID, y.GID)
	c.AdditionalGids = pick(label.AdditionalGids, y.AdditionalGids)
	c.NoNewPrivileges = pick(label.NoNewPrivileges, y.NoNewPrivileges)
	c.OOMScoreAdj = pick(label.OOMScoreAdj, y.OOMScoreAdj)
	c.RootfsPropagation = pick(label.RootfsPropagation, y.RootfsPropagation)
	c.CgroupsPath = pick(label.CgroupsPath, y.CgroupsPath)
	c.Resources = pick(label.Resources, y.Resources)
	c.Sysctl = pick(label.Sysctl, y.Sysctl)
	c.Rlimits = pick(label.Rlimits, y.Rlimits)
	c.UIDMappings = pick(label.UIDMappings, y.UIDMappings)
	c.GIDMappings = pick(label.GIDMappings, y.GIDMappings)
	c.Annotations = pick(label.Annotations, y.Annotations)
	if label.Runtime != nil || y.Runtime != nil {
		rt := runtimeConfig(label.Runtime, y.Runtime)
		c.Runtime = &rt
	}
	return &out, nil
}

// EffectiveSpec returns a copy of m (spec.Moby.Defaulted) with every
// container made Effective, for --dry-run after image resolution. config
// returns the image config of a reference.
func EffectiveSpec(m *spec.Moby, config func(ref string) (v1.Config, error)) (*spec.Moby, error) {
	out := *m.Defaulted()
	for _, list := range []*[]*spec.Image{&out.Onboot, &out.Onshutdown, &out.Services} {
		imgs := make([]*spec.Image, len(*list))
		for i, img := range *list {
			cfg, err := config(img.Image)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", describe(img), err)
			}
			if imgs[i], err = Effective(img, cfg); err != nil {
				return nil, err
			}
		}
		*list = imgs
	}
	return &out, nil
}
