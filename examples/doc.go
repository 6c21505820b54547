// Package examples holds no code: it is the home of the example specs (minimal.yml, hello.yml,
// sshd.yml; clusters/ for the fleet examples) and of the tests that build each of them from
// mobykit's own images (images/, built with pkgbuild) and boot them in QEMU, plus the boot
// benchmark (bench/boot.sh).
package examples
