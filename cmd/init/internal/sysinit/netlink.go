package sysinit

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// setupInterface applies one runtime.json interface, with LinuxKit's meaning: with peer set
// and no add, add is veth; veth pairs and createInRoot links are created in the root
// namespace and then moved into the container's; other added links are created directly in
// it; with no add, an existing link is moved.
func setupInterface(pid int, iface Interface) error {
	if iface.Name == "" {
		return fmt.Errorf("runtime interfaces: an interface needs a name")
	}
	if iface.Peer != "" && iface.Add == "" {
		iface.Add = "veth"
	}
	if iface.Add == "veth" && iface.Peer == "" {
		return fmt.Errorf("runtime interfaces: veth %s needs a peer", iface.Name)
	}
	move := iface.Add == "" || iface.Add == "veth" || iface.CreateInRoot
	if iface.Add != "" {
		nsPid := pid
		if move {
			nsPid = 0
		}
		if err := linkAdd(iface.Name, iface.Add, iface.Peer, nsPid); err != nil {
			return fmt.Errorf("runtime interfaces: add %s %s: %w", iface.Add, iface.Name, err)
		}
	}
	if move {
		ifi, err := net.InterfaceByName(iface.Name)
		if err != nil {
			return fmt.Errorf("runtime interfaces: %s: %w", iface.Name, err)
		}
		if err := linkSetNsPid(ifi.Index, pid); err != nil {
			return fmt.Errorf("runtime interfaces: move %s to pid %d: %w", iface.Name, pid, err)
		}
	}
	return nil
}

type nlAttr struct {
	typ  uint16
	data []byte
	kids []nlAttr
}

func (a nlAttr) bytes() []byte {
	body := a.data
	for _, k := range a.kids {
		body = append(body, k.bytes()...)
	}
	l := 4 + len(body)
	b := make([]byte, 4, nlAlign(l))
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], a.typ)
	b = append(b, body...)
	for len(b) < nlAlign(l) {
		b = append(b, 0)
	}
	return b
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

func cstr(s string) []byte { return append([]byte(s), 0) }

func u32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

func ifinfomsg(index int32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	return b
}

func linkAdd(name, kind, peer string, nsPid int) error {
	info := nlAttr{typ: unix.IFLA_LINKINFO, kids: []nlAttr{{typ: unix.IFLA_INFO_KIND, data: cstr(kind)}}}
	if kind == "veth" {
		const vethInfoPeer = 1
		peerMsg := append(ifinfomsg(0), nlAttr{typ: unix.IFLA_IFNAME, data: cstr(peer)}.bytes()...)
		info.kids = append(info.kids, nlAttr{typ: unix.IFLA_INFO_DATA, kids: []nlAttr{{typ: vethInfoPeer, data: peerMsg}}})
	}
	body := ifinfomsg(0)
	body = append(body, nlAttr{typ: unix.IFLA_IFNAME, data: cstr(name)}.bytes()...)
	body = append(body, info.bytes()...)
	if nsPid != 0 {
		body = append(body, nlAttr{typ: unix.IFLA_NET_NS_PID, data: u32(uint32(nsPid))}.bytes()...)
	}
	return nlRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
}

func linkSetNsPid(index, pid int) error {
	body := ifinfomsg(int32(index))
	body = append(body, nlAttr{typ: unix.IFLA_NET_NS_PID, data: u32(uint32(pid))}.bytes()...)
	return nlRequest(unix.RTM_NEWLINK, 0, body)
}

// nlRequest sends one rtnetlink request and waits for its acknowledgement.
func nlRequest(typ uint16, flags uint16, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], typ)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	binary.NativeEndian.PutUint32(msg[8:12], 1)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(m.Data[0:4])); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			}
		}
	}
}

// linkUp sets the IFF_UP flag of a link (used for lo).
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
