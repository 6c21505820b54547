package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// Guest-side addresses of the user-mode network QEMUUserNetdev describes. QEMU only forwards
// guest connections (guestfwd) to addresses inside the user network, so the network is
// placed around the metadata address: 169.254.169.0/24, with the metadata service at .254.
const (
	MetadataAddr = "169.254.169.254"
	UserNet      = "169.254.169.0/24"
	UserHost     = "169.254.169.2"
	UserDNS      = "169.254.169.3"
	UserDHCP     = "169.254.169.15"
)

// QEMUUserNetdev returns the value of a qemu -netdev option for user-mode networking in which
// the guest's connections to 169.254.169.254:80 are handed, one process per connection, to
// relay (an argv, e.g. {"/usr/bin/mobykit", "metadata", "connect", "unix:/state/imds.sock"}),
// which relays them to the VM's listener (Server.ListenVMUnix or ListenVM). extra options
// (e.g. "restrict=on", "hostfwd=...") are appended as given.
//
// The user network reaches the host's loopback through its gateway (169.254.169.2 here) unless
// extra has "restrict=on", which leaves the guest DHCP, guestfwd (the metadata service) and
// hostfwd (published ports) only.
func QEMUUserNetdev(id string, relay []string, extra ...string) (string, error) {
	if len(relay) == 0 {
		return "", errors.New("imds: qemu netdev: empty relay command")
	}
	for _, a := range relay {
		// QEMU splits the command shell-like and the -netdev value at commas: only plain
		// path characters go through both unchanged.
		if a == "" || strings.Trim(a, relayChars) != "" {
			return "", fmt.Errorf("imds: qemu netdev: relay argument %q: only letters, digits and %q are allowed", a, "/._-+:@=")
		}
	}
	opts := []string{
		"user", "id=" + id,
		"net=" + UserNet, "host=" + UserHost, "dns=" + UserDNS, "dhcpstart=" + UserDHCP,
		"guestfwd=tcp:" + MetadataAddr + ":80-cmd:" + strings.Join(relay, " "),
	}
	return strings.Join(append(opts, extra...), ","), nil
}

const relayChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@="

// Relay copies in to a connection to addr ("unix:PATH" for a unix socket, else a TCP
// HOST:PORT) and the connection's answers to out, until both directions are done: the
// per-connection program behind QEMUUserNetdev (`mobykit metadata connect unix:PATH`).
func Relay(ctx context.Context, addr string, in io.Reader, out io.Writer) error {
	var d net.Dialer
	network, address := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return fmt.Errorf("imds: relay to %s: %w", addr, err)
	}
	defer c.Close()
	up := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, in)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		up <- err
	}()
	_, err = io.Copy(out, c)
	if err != nil {
		return fmt.Errorf("imds: relay from %s: %w", addr, err)
	}
	// The server has answered and closed; the guest side may still be open, and that is fine.
	return nil
}

// AttachQEMU is what a QEMU instance plugin calls when it launches a VM with user-mode
// networking: it registers r, serves it on its own unix socket at socketPath (ListenVMUnix:
// mode 0600, in a folder closed to other users), and returns the -netdev value (see
// QEMUUserNetdev) whose guestfwd runs relay("unix:"+socketPath) for each guest connection, e.g.
// func(target string) []string { return []string{mobykit, "metadata", "connect", target} }.
// There is no TCP listener: only the VM's QEMU (and the server's own user) can reach the
// record. Unregister(r.InstanceID) undoes it when the VM is destroyed.
func (s *Server) AttachQEMU(r Record, netID, socketPath string, relay func(target string) []string, extra ...string) (string, error) {
	if err := s.Register(r); err != nil {
		return "", err
	}
	nd, err := QEMUUserNetdev(netID, relay("unix:"+socketPath), extra...)
	if err != nil {
		s.Unregister(r.InstanceID)
		return "", err
	}
	if err := s.ListenVMUnix(r.InstanceID, socketPath); err != nil {
		s.Unregister(r.InstanceID)
		return "", err
	}
	return nd, nil
}
