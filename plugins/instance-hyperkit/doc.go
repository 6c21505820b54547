// Package instancehyperkit is mobykit's HyperKit instance plugin (InfraKit Instance/0.6.1)
// for macOS: each instance is a HyperKit process booting a kernel and initrd by kexec, with a
// state folder (spec, tags, process record, console log, disks), vpnkit networking (a stable
// vpnkit UUID per instance, so the same MAC and address every time, and the logical ID as the
// preferred address when it is IPv4), and userdata on a metadata CD. It accepts the Properties
// of LinuxKit's and InfraKit's HyperKit plugins and shares the lifecycle (vm.Instances) and
// state machinery with instance-qemu.
//
// HyperKit does not run on Linux: the tests drive the plugin against a stand-in hyperkit
// executable (testdata/fakehyperkit) that records its command line and behaves like HyperKit
// towards the plugin (PID file, console, ACPI shutdown on SIGTERM).
package instancehyperkit
