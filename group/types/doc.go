// Package types is the group spec schema of docs/infrakit/PROTOCOL.md §11 (InfraKit's
// pkg/controller/group/types) plus mobykit's rolling-update extensions, and the config hash of
// §12 that tags every member (infrakit.config.hash). The hash must agree byte for byte with the
// one a real InfraKit group controller computes, so that both agree on which members are
// current; it is tested against every case of vectors/config-hash.json.
package types
