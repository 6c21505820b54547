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
// relay (an argv, e.g. {"/usr/bin/mobykit", "metadata", "connect", "127.0.0.1:PORT"}), which
// relays them to the VM's listener (Server.ListenVM). extra options (e.g. "hostfwd=...") are
// appended as given.
func QEMUUserNetdev(id string, relay []string, extra ...string) (string, error) {
	if len(relay) == 0 {
		return "", errors.New("imds: qemu netdev: empty relay command")
	}
	for _, a := range relay {
		if strings.ContainsAny(a, " ,\t\n'\"") {
			return "", fmt.Errorf("imds: qemu netdev: relay argument %q contains a space, comma or quote", a)
		}
	}
	opts := []string{
		"user", "id=" + id,
		"net=" + UserNet, "host=" + UserHost, "dns=" + UserDNS, "dhcpstart=" + UserDHCP,
		"guestfwd=tcp:" + MetadataAddr + ":80-cmd:" + strings.Join(relay, " "),
	}
	return strings.Join(append(opts, extra...), ","), nil
}

// Relay copies in to a TCP connection to addr and the connection's answers to out, until both
// directions are done: the per-connection program behind QEMUUserNetdev (`mobykit metadata
// connect ADDR`).
func Relay(ctx context.Context, addr string, in io.Reader, out io.Writer) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("imds: relay to %s: %w", addr, err)
	}
	defer c.Close()
	up := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, in)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
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
// networking: it registers r, starts r's own listener on a free loopback port, and returns the
// -netdev value (see QEMUUserNetdev) whose guestfwd runs relay(listenerAddress) for each guest
// connection, e.g. func(a string) []string { return []string{mobykit, "metadata", "connect", a} }.
// Unregister(r.InstanceID) undoes it when the VM is destroyed.
func (s *Server) AttachQEMU(r Record, netID string, relay func(addr string) []string, extra ...string) (string, error) {
	if err := s.Register(r); err != nil {
		return "", err
	}
	addr, err := s.ListenVM(r.InstanceID, "127.0.0.1:0")
	if err != nil {
		s.Unregister(r.InstanceID)
		return "", err
	}
	nd, err := QEMUUserNetdev(netID, relay(addr.String()), extra...)
	if err != nil {
		s.Unregister(r.InstanceID)
		return "", err
	}
	return nd, nil
}
