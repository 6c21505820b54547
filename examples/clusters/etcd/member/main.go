//go:build linux

// Command etcd-member prepares one member of the etcd cluster example
// (examples/clusters/etcd) before etcd starts. It runs as an onboot container after the
// metadata agent and the data disk's format and mount:
//
//   - it puts the address instance-qemu gives the VM on the group network (kernel command
//     line: mobykit.ip=ADDR/N mobykit.mac=MAC) on the interface with that MAC; on a cloud the
//     address comes from DHCP and the command line has none;
//   - it reads the member's name (its logical ID, an address) and every member's address from
//     the userdata (/run/config/etcd/name and /run/config/etcd/peers);
//   - it decides how etcd starts (see Decide: restart from the data folder, create the
//     cluster, or join a running one, `member add` included) and writes etcd's environment
//     to /run/etcd/env, which the etcd service sources.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/internal/guestnet"
)

// userdata reads /run/config/etcd/NAME, trimmed.
func userdata(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/run/config/etcd", name))
	if err != nil {
		return "", fmt.Errorf("userdata: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func run() error {
	cl, err := guestnet.ReadCmdline()
	if err != nil {
		return err
	}
	if g, ok, err := cl.Group(); err != nil {
		return err
	} else if ok {
		name, err := g.Configure()
		if err != nil {
			return err
		}
		log.Printf("etcd-member: group network %s on %s", g, name)
	}
	name, err := userdata("name")
	if err != nil {
		return err
	}
	peers, err := userdata("peers")
	if err != nil {
		return err
	}
	dataDir := os.Getenv("ETCD_DATA_DIR")
	if dataDir == "" {
		dataDir = "/var/lib/etcd/data"
	}
	c := Config{Name: name, Peers: strings.Fields(peers), DataDir: dataDir}
	if err := c.Validate(); err != nil {
		return err
	}
	p, err := Decide(context.Background(), c, c.cluster())
	if err != nil {
		return err
	}
	log.Printf("etcd-member: %s starts %s: %s", name, p.State, p.Why)
	return writeFile("/run/etcd/env", c.Env(p))
}

// writeFile writes through a temporary file and a rename.
func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func main() {
	log.SetFlags(0)
	if err := run(); err != nil {
		log.Fatalf("etcd-member: %v", err)
	}
}
