package vm

import (
	"fmt"

	"github.com/mobykit/mobykit/metadata/iso"
)

// DataISOFile is the metadata CD's file name in a VM's state folder.
const DataISOFile = "metadata.iso"

// WriteMetadataCD writes userdata as a metadata CD into dir (LinuxKit's "config" plus
// NoCloud's user-data and meta-data, label "cidata", so LinuxKit's agent, mobykit's and
// cloud-init all find it) and returns its path.
func WriteMetadataCD(dir Dir, userdata []byte, instanceID, hostname string) (string, error) {
	p := dir.Path(DataISOFile)
	if err := iso.WriteFile(p, iso.Metadata(userdata, instanceID, hostname), iso.Options{}); err != nil {
		return "", fmt.Errorf("metadata CD for %s: %w", dir.Name(), err)
	}
	return p, nil
}
