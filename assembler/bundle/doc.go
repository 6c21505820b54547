// Package bundle turns a spec.Image plus its image config into the OCI
// runtime bundle files LinuxKit writes for each container: config.json (the
// OCI runtime spec) and runtime.json (LinuxKit's init runtime config). The
// image's org.mobyproject.config label supplies defaults under the YAML
// fields, exactly as LinuxKit's ConfigToOCI does.
package bundle
