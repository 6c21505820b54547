// Package flavormoby is mobykit's Flavor plugin (InfraKit Flavor/0.1.1): a group's Flavor
// Properties name a LinuxKit-style image spec; Prepare builds it through the assembler (once
// per spec content, shared by every member and every group using the same spec), points the
// instance spec at the result ("moby": the built image's prefix or file, the key instance-qemu
// and instance-hyperkit boot from), tags the instance with the image digest, and fills the
// userdata template per instance (group, index, logical ID, peers). Healthy probes a published
// TCP or HTTP port, or waits for a line on the console; Drain has nothing to drain.
//
// Properties are decoded and compiled (durations, the console regexp, the userdata
// templates) once per distinct document and cached, so health probes only probe. Builds run
// as background jobs under the plugin's context: Close cancels them and waits.
//
// Rolling onto a new image: InfraKit's config hash covers only the group's Properties, never
// the file a path points at. Inline specs ("spec_yaml") change the hash by themselves; specs
// given by path are pinned with "spec_digest" (Pin, or `mobykit moby pin`), which Validate
// checks against the file, so editing the file and re-pinning changes the hash and rolls the
// group, and a forgotten re-pin is refused rather than silently ignored.
package flavormoby
