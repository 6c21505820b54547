package imds_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mobykit/mobykit/metadata/imds"
)

// A VM launcher gives each VM its record and a -netdev that reaches it; the guest then sees
// an EC2 metadata service at 169.254.169.254.
func ExampleServer_AttachQEMU() {
	s := imds.New(imds.WithTokenRequired())
	defer s.Close()
	var listener string
	netdev, err := s.AttachQEMU(imds.Record{InstanceID: "i-0001", Hostname: "node1", UserData: []byte("hello")}, "net0",
		func(addr string) []string {
			listener = addr
			return []string{"/usr/bin/mobykit", "metadata", "connect", addr}
		})
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.Contains(netdev, "guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/mobykit metadata connect 127.0.0.1:"))

	// What the guest's IMDSv2 client does, here straight to the VM's listener.
	req, _ := http.NewRequest(http.MethodPut, "http://"+listener+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, _ := http.DefaultClient.Do(req)
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, "http://"+listener+"/latest/meta-data/hostname", nil)
	req.Header.Set("X-aws-ec2-metadata-token", string(tok))
	resp, _ = http.DefaultClient.Do(req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	s.Unregister("i-0001")
	// Output:
	// true
	// node1
}
