package instanceaws

import (
	"fmt"
	"regexp"
	"strings"
)

// EC2's architecture names (DescribeImages, RegisterImage).
const (
	archX86 = "x86_64"
	archARM = "arm64"
)

// reGraviton matches the instance families of AWS's Graviton (arm64) processors: a family
// letter run, a generation, then "g" and optional extra attributes (t4g, m7g, c7gn, m6gd,
// r8g, x2gd, im4gn, is4gen, g5g, hpc7g).
var reGraviton = regexp.MustCompile(`^[a-z]+[0-9]+g[a-z]*$`)

// instanceArch returns the EC2 architecture of an instance type: arm64 for Graviton families
// (and a1, the first Graviton, and mac2, Apple silicon), x86_64 otherwise.
func instanceArch(instanceType string) string {
	family, _, _ := strings.Cut(instanceType, ".")
	switch {
	case family == "a1", strings.HasPrefix(family, "mac2"), reGraviton.MatchString(family):
		return archARM
	default:
		return archX86
	}
}

// ec2Arch maps an architecture in Go's names (flavor-moby's and the assembler's "amd64",
// "arm64") or EC2's to EC2's; it reports false for one EC2 cannot run.
func ec2Arch(a string) (string, bool) {
	switch a {
	case "amd64", "x86_64":
		return archX86, true
	case "arm64", "aarch64":
		return archARM, true
	}
	return "", false
}

// importArch is the EC2 architecture a moby image is imported with: Import.Architecture when
// set, else the image's own ("arch", set by flavor-moby beside "moby"), else x86_64.
func (p *Properties) importArch() string {
	if p.Import != nil && p.Import.Architecture != "" {
		return p.Import.Architecture
	}
	if a, ok := ec2Arch(p.Arch); ok {
		return a
	}
	return archX86
}

// checkArch refuses to launch an AMI of one architecture on an instance type of the other,
// which EC2 would refuse with a less helpful error.
func checkArch(instanceType, imageArch, image string) error {
	if imageArch == "" {
		return nil
	}
	if want := instanceArch(instanceType); want != imageArch {
		return fmt.Errorf("instance type %q runs %s but image %s is %s: pick a %s instance type (e.g. %s) or build the image for %s",
			instanceType, want, image, imageArch, imageArch, exampleType(imageArch), want)
	}
	return nil
}

func exampleType(arch string) string {
	if arch == archARM {
		return "t4g.small, m7g.large"
	}
	return "t3.small, m7i.large"
}
