//go:build unix

package imds

import (
	"fmt"
	"io/fs"
	"net"
	"syscall"
)

// setHopLimit sets the IP TTL of what c sends (and the IPv6 hop limit when c is an IPv6
// socket, which may also carry IPv4-mapped traffic).
func setHopLimit(c *net.TCPConn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	v6 := false
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a.IP.To4() == nil {
		v6 = true
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			if serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, n); serr != nil {
				serr = fmt.Errorf("IPV6_UNICAST_HOPS: %w", serr)
			}
			return
		}
		if serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, n); serr != nil {
			serr = fmt.Errorf("IP_TTL: %w", serr)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
