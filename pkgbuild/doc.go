// Package pkgbuild builds mobykit's system images (kernel, init, runc, getty, …) from small
// declarative recipes, without Docker.
//
// A recipe is images/NAME/build.yml. It lists the inputs of the image — Go programs of this
// repository, Go programs fetched from the module proxy, Debian packages fetched with
// `apt-get download`, a Debian kernel trimmed to the modules a VM needs, and plain files — and
// the image config (entrypoint, env, and the org.mobyproject.config label that gives LinuxKit
// defaults such as capabilities or `net: host`).
//
// Building is deterministic: every file lands in one layer written in sorted order with fixed
// owners and times, so the same inputs give the same image digest. An image is tagged
// ORG/NAME:HASH, where HASH is computed from the recipe and the identity of its inputs (source
// file contents, module versions, Debian package checksums) before anything is built; Build skips
// the work when the cache already holds that tag. ORG/NAME:latest is moved to the newest build so
// that specs can name images without pinning.
package pkgbuild
