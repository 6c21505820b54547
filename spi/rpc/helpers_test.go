package rpc

import "net"

// netListenNoUnlink binds a unix socket that stays on disk after Close, like one left behind
// by a killed process.
func netListenNoUnlink(path string) (net.Listener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	return ln, nil
}
