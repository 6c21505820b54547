package spec_test

import (
	"fmt"

	"github.com/mobykit/mobykit/assembler/spec"
)

func ExampleParse() {
	_, err := spec.Parse("web.yml", []byte(`
services:
  - name: web
    image: nginx:alpine
    capabilites: [CAP_NET_BIND_SERVICE]
`))
	fmt.Println(err)
	// Output: web.yml:5:5: services[0].capabilites: unknown field (did you mean "capabilities"?)
}

func ExampleMerge() {
	base, _ := spec.Parse("base.yml", []byte("kernel: {image: linuxkit/kernel:6.6.71, cmdline: console=tty0}\nservices: [{name: getty, image: linuxkit/getty:v1}]\n"))
	over, _ := spec.Parse("debug.yml", []byte("kernel: {cmdline: console=ttyS0}\nservices: [{name: sshd, image: linuxkit/sshd:v1}]\n"))
	m, _ := spec.Merge(base, over)
	out, _ := m.Bytes()
	fmt.Print(string(out))
	// Output:
	// kernel:
	//   image: linuxkit/kernel:6.6.71
	//   cmdline: console=ttyS0
	// services:
	//   - name: getty
	//     image: linuxkit/getty:v1
	//   - name: sshd
	//     image: linuxkit/sshd:v1
}
