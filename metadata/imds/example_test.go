package imds_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/metadata/imds"
)

// A VM launcher gives each VM its record and a -netdev that reaches it; the guest then sees
// an EC2 metadata service at 169.254.169.254.
func ExampleServer_AttachQEMU() {
	s := imds.New(imds.WithTokenRequired())
	defer s.Close()
	state, _ := os.MkdirTemp("", "vm") // the VM's state folder: mode 0700
	defer os.RemoveAll(state)
	sock := filepath.Join(state, "imds.sock")
	netdev, err := s.AttachQEMU(imds.Record{InstanceID: "i-0001", Hostname: "node1", UserData: []byte("hello")}, "net0", sock,
		func(target string) []string { return []string{"/usr/bin/mobykit", "metadata", "connect", target} },
		"restrict=on")
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.Contains(netdev, "guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/mobykit metadata connect unix:"+sock))

	// What the guest's IMDSv2 client does, here straight to the VM's socket.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest(http.MethodPut, "http://169.254.169.254/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, _ := hc.Do(req)
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, "http://169.254.169.254/latest/meta-data/hostname", nil)
	req.Header.Set("X-aws-ec2-metadata-token", string(tok))
	resp, _ = hc.Do(req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	s.Unregister("i-0001")
	// Output:
	// true
	// node1
}
