// Package spec parses, merges and validates mobykit image specs.
//
// A spec is LinuxKit's YAML format (kernel, init, onboot, onshutdown,
// services, files, volumes) with the same meaning and defaults: any spec
// LinuxKit accepts is accepted here. Parsing is strict and every error names
// the file, the line and the field it concerns. Several spec files merge in
// order with LinuxKit's AppendConfig semantics (Merge), and the merged result
// can be printed back (Bytes) for --dry-run.
package spec
