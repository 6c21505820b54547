package qemu

import (
	"fmt"

	"github.com/mobykit/mobykit/metadata/fwcfg"
	"github.com/mobykit/mobykit/vm"
)

// MetadataCD writes userdata as a metadata CD into the state folder (vm.WriteMetadataCD) and
// attaches it.
func MetadataCD(instanceID, hostname string) MetadataFunc {
	return func(dir vm.Dir, userdata []byte) (string, []FwCfg, error) {
		p, err := vm.WriteMetadataCD(dir, userdata, instanceID, hostname)
		return p, nil, err
	}
}

// MetadataFwCfg writes userdata into the state folder and exposes it as the fw_cfg entry
// fwcfg.UserdataName.
func MetadataFwCfg(dir vm.Dir, userdata []byte) (string, []FwCfg, error) {
	p, _, err := fwcfg.WritePayload(string(dir), userdata)
	if err != nil {
		return "", nil, fmt.Errorf("fw_cfg userdata for %s: %w", dir.Name(), err)
	}
	return "", []FwCfg{{Name: fwcfg.UserdataName, File: p}}, nil
}

// MetadataBoth attaches userdata both as a metadata CD and through fw_cfg, so that whichever
// provider the guest's agent probes first finds it.
func MetadataBoth(instanceID, hostname string) MetadataFunc {
	cd := MetadataCD(instanceID, hostname)
	return func(dir vm.Dir, userdata []byte) (string, []FwCfg, error) {
		p, _, err := cd(dir, userdata)
		if err != nil {
			return "", nil, err
		}
		_, fw, err := MetadataFwCfg(dir, userdata)
		return p, fw, err
	}
}
