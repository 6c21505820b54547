package qemu

import (
	"fmt"

	"github.com/mobykit/mobykit/metadata/fwcfg"
	"github.com/mobykit/mobykit/metadata/iso"
	"github.com/mobykit/mobykit/vm"
)

// DataISOFile is the metadata CD's file name in a VM's state folder.
const DataISOFile = "metadata.iso"

// MetadataCD writes userdata as a metadata CD (LinuxKit's "config" plus NoCloud's user-data
// and meta-data, label "cidata") into the state folder and attaches it.
func MetadataCD(instanceID, hostname string) MetadataFunc {
	return func(dir vm.Dir, userdata []byte) (string, []FwCfg, error) {
		p := dir.Path(DataISOFile)
		if err := iso.WriteFile(p, iso.Metadata(userdata, instanceID, hostname), iso.Options{}); err != nil {
			return "", nil, fmt.Errorf("metadata CD for %s: %w", dir.Name(), err)
		}
		return p, nil, nil
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
