// Package grouptest drives instance-aws the way production does: mobykit's group controller
// talks to the plugin over its InfraKit socket (spi/rpc), with the vanilla flavor, against
// moto_server. It holds tests only; it lives apart from the plugin so that the plugin package
// does not depend on the controller even in its tests.
package grouptest
