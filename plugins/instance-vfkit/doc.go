// Package instancevfkit is mobykit's vfkit instance plugin (InfraKit Instance/0.6.1) for
// macOS, Intel and Apple Silicon: each instance is a vfkit process (Virtualization.framework)
// booting a kernel and initrd, or a raw disk image or ISO by EFI, with a state folder (spec,
// tags, process record, console log, disks, REST socket), a NAT NIC with a MAC fixed by the
// logical ID, optionally a second NIC on a network shared by a group's VMs through a
// user-supplied switch's unixgram socket (vmnet-helper, gvproxy), persistent disks per logical
// ID, and userdata on a metadata disk (label cidata). Stop goes through vfkit's REST API
// (POST /vm/state {"state":"Stop"}), then SIGTERM and SIGKILL after a timeout. It shares the
// lifecycle (vm.Instances) and state machinery with instance-qemu and instance-hyperkit.
//
// vfkit does not run on Linux: the tests drive the plugin against a stand-in vfkit (the test
// binary itself, re-executed) that checks the command line, logs to the console file, serves
// the REST API on the given unix socket and exits on Stop.
package instancevfkit
