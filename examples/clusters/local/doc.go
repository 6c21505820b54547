// Package local is the local 3-VM cluster example (see README.md here): its image spec, group
// file and member program, and the end-to-end test and benchmark that drive it through the
// group controller, flavor-moby and instance-qemu exactly as the walk-through does.
package local
