// Package vm is the VM-process machinery shared by mobykit's local hypervisor plugins
// (instance-qemu and instance-hyperkit) and by `mobykit run qemu`: one state folder per VM
// (spec, tags, process record, console log, QMP socket, disks), starting a hypervisor process
// detached from the caller so that VMs outlive a plugin restart, finding it again later and
// checking that the PID still belongs to that VM (start time and command line recorded at
// start), and stopping it gracefully then by force after a deadline.
//
// The hypervisor-specific parts live below it: vm/qemu (QEMU command line, accelerator
// detection), vm/qmp (QMP client) and vm/hyperkit (HyperKit command line). Instances ties the
// pieces together into an spi.Instance given a Backend, so that each instance plugin only
// parses its Properties and builds its command line.
package vm
