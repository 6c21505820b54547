package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mobykit/mobykit/metadata/config"
	"github.com/mobykit/mobykit/metadata/fwcfg"
)

// FwCfg reads userdata from the QEMU fw_cfg entry opt/com.mobykit/userdata (qemu
// -fw_cfg name=opt/com.mobykit/userdata,file=...), through the qemu_fw_cfg sysfs tree or,
// without that module, the x86 fw_cfg I/O ports.
type FwCfg struct {
	sysfs, dmi, name string
	data             []byte
}

// NewFwCfg returns the fw_cfg provider for cfg.
func NewFwCfg(cfg Config) *FwCfg {
	name := cfg.FwCfgName
	if name == "" {
		name = fwcfg.UserdataName
	}
	return &FwCfg{sysfs: cfg.FwCfgSysfs, dmi: cfg.DMIDir, name: name}
}

func (p *FwCfg) String() string { return "fw_cfg" }

// Probe reads the entry.
func (p *FwCfg) Probe(context.Context) error {
	b, err := fwcfg.ReadSysfs(p.sysfs, p.name, config.MaxData)
	if err != nil && errors.Is(err, fwcfg.ErrNotFound) && p.dmi != "" {
		var perr error
		b, perr = fwcfg.ReadPorts(p.dmi, p.name, config.MaxData)
		if perr != nil {
			return fmt.Errorf("%w; I/O ports: %w", err, perr)
		}
		err = nil
		slog.Info("fw_cfg: read through the I/O ports (no qemu_fw_cfg sysfs)", "entry", p.name)
	}
	if err != nil {
		return err
	}
	p.data = b
	return nil
}

// Extract returns the entry's contents.
func (p *FwCfg) Extract(context.Context, *config.Dir) ([]byte, error) { return p.data, nil }
