//go:build !unix

package imds

import (
	"io/fs"
	"net"
)

func setHopLimit(c *net.TCPConn, n int) error { return nil }

func fileOwner(fi fs.FileInfo) (int, bool) { return 0, false }
