// Package etcd is the etcd cluster example (see README.md here): a 3-member etcd quorum group
// on instance-qemu whose members keep their data on a persistent disk per logical ID, and the
// end-to-end test and benchmark that roll it onto a new image and replace a killed member
// while a client writes, through the group controller, flavor-moby and instance-qemu.
package etcd
