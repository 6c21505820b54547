package instanceaws

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/spi"
)

func TestValidate(t *testing.T) {
	const ok = `"ImageId":"ami-0123456789abcdef0","InstanceType":"t3.small"`
	tests := []struct {
		name  string
		props string
		// want lists substrings of the error, "" for success.
		want []string
	}{
		{"minimal", `{"RunInstancesInput":{` + ok + `}}`, nil},
		{"full", `{"RunInstancesInput":{` + ok + `,"SubnetId":"subnet-0123abcd","SecurityGroupIds":["sg-0123abcd"],
			"KeyName":"ops","IamInstanceProfile":{"Name":"etcd"},"EbsOptimized":true,
			"BlockDeviceMappings":[{"DeviceName":"/dev/xvda","Ebs":{"VolumeSize":8,"VolumeType":"gp3","Iops":3000,"Throughput":125,"Encrypted":true,"KmsKeyId":"alias/x"}},
			                       {"DeviceName":"/dev/sdb","VirtualName":"ephemeral0"},{"DeviceName":"/dev/sdc","NoDevice":true}],
			"InstanceMarketOptions":{"MarketType":"spot","SpotOptions":{"MaxPrice":"0.02","SpotInstanceType":"persistent","InstanceInterruptionBehavior":"stop"}},
			"Placement":{"AvailabilityZone":"eu-west-1a","Tenancy":"default"},
			"MetadataOptions":{"HttpTokens":"required","HttpPutResponseHopLimit":2},
			"InstanceInitiatedShutdownBehavior":"terminate"},
			"Tags":{"team":"storage"}}`, nil},
		{"image by digest", `{"RunInstancesInput":{"InstanceType":"t3.small"},"Image":{"Digest":"sha256:` + strings.Repeat("0", 64) + `"}}`, nil},
		{"null", `null`, []string{"Properties: missing"}},
		{"empty", ``, []string{"Properties: missing"}},
		{"not JSON", `{"RunInstancesInput":`, []string{"instance-aws Properties"}},
		{"unknown field", `{"RunInstancesInput":{` + ok + `,"Subnet":"subnet-0123abcd"}}`, []string{`unknown field "Subnet"`}},
		{"unknown top-level field", `{"RunInstancesInput":{` + ok + `},"Tag":{}}`, []string{`unknown field "Tag"`}},
		{"plugin-owned field", `{"RunInstancesInput":{` + ok + `,"UserData":"eA=="}}`, []string{`unknown field "UserData"`}},
		{"trailing data", `{"RunInstancesInput":{` + ok + `}} {}`, []string{"trailing data"}},
		{"no image (flavor-moby sets moby later)", `{"RunInstancesInput":{"InstanceType":"t3.small"}}`, nil},
		{"moby image", `{"RunInstancesInput":{"InstanceType":"t4g.small"},"moby":"/var/lib/mobykit/builds/x/image.raw","Import":{"BootMode":"uefi","Architecture":"arm64"}}`, nil},
		{"arm64 moby image on Graviton", `{"RunInstancesInput":{"InstanceType":"m7g.large"},"moby":"/b/image.raw","arch":"arm64"}`, nil},
		{"amd64 moby image", `{"RunInstancesInput":{"InstanceType":"c7i.large"},"moby":"/b/image.raw","arch":"amd64"}`, nil},
		{"arm64 moby image on x86", `{"RunInstancesInput":{"InstanceType":"t3.small"},"moby":"/b/image.raw","arch":"arm64"}`,
			[]string{"RunInstancesInput.InstanceType", `"t3.small" runs x86_64`, "/b/image.raw is arm64"}},
		{"amd64 moby image on Graviton", `{"RunInstancesInput":{"InstanceType":"c7g.xlarge"},"moby":"/b/image.raw"}`,
			[]string{`"c7g.xlarge" runs arm64`, "/b/image.raw is x86_64"}},
		{"volumes", `{"RunInstancesInput":{` + ok + `,"SubnetId":"subnet-0123abcd"},"Volumes":[{"Name":"data","DeviceName":"/dev/sdf","Size":20,"Encrypted":true}]}`, nil},
		{"volumes without a zone", `{"RunInstancesInput":{` + ok + `},"Volumes":[{"Name":"data","DeviceName":"/dev/sdf","Size":20}]}`,
			[]string{"Volumes: set RunInstancesInput.SubnetId or Placement.AvailabilityZone"}},
		{"bad volumes", `{"RunInstancesInput":{` + ok + `,"Placement":{"AvailabilityZone":"eu-west-1a"},"BlockDeviceMappings":[{"DeviceName":"/dev/sdg","Ebs":{}}]},
			"Volumes":[{"Name":"Data","DeviceName":"/dev/sdf","Size":0,"VolumeType":"fast"},{"Name":"x","DeviceName":"/dev/sdg","Size":1},{"Name":"x","DeviceName":"sda1x","Size":1}]}`,
			[]string{`Volumes[0].Name: "Data"`, "Volumes[0].Size: 0 GiB", `Volumes[0].VolumeType: "fast"`, `Volumes[1].DeviceName: "/dev/sdg" is used`, `Volumes[2].Name: "x" used twice`, `Volumes[2].DeviceName: "sda1x"`}},
		{"unknown arch", `{"RunInstancesInput":{"InstanceType":"t3.small"},"arch":"riscv64"}`, []string{`arch: "riscv64"`}},
		{"arch contradicts Import", `{"RunInstancesInput":{"InstanceType":"t4g.small"},"arch":"arm64","Import":{"Architecture":"x86_64"}}`,
			[]string{"Import.Architecture", "contradicts"}},
		{"both images", `{"RunInstancesInput":{` + ok + `},"Image":{"Name":"x"}}`, []string{"Image: set only one of"}},
		{"moby and AMI", `{"RunInstancesInput":{` + ok + `},"moby":"/x.raw"}`, []string{"Image: set only one of"}},
		{"import boot mode", `{"RunInstancesInput":{"InstanceType":"t3.small"},"moby":"/x.raw","Import":{"BootMode":"bios"}}`, []string{"Import.BootMode"}},
		{"import arch", `{"RunInstancesInput":{"InstanceType":"t3.small"},"moby":"/x.raw","Import":{"Architecture":"amd64"}}`, []string{"Import.Architecture"}},
		{"bad AMI", `{"RunInstancesInput":{"ImageId":"ubuntu","InstanceType":"t3.small"}}`, []string{`RunInstancesInput.ImageId: "ubuntu" is not an AMI ID`}},
		{"empty image ref", `{"RunInstancesInput":{"InstanceType":"t3.small"},"Image":{}}`, []string{"Image: set Digest or Name"}},
		{"bad digest", `{"RunInstancesInput":{"InstanceType":"t3.small"},"Image":{"Digest":"md5:x"}}`, []string{"Image.Digest"}},
		{"no type", `{"RunInstancesInput":{"ImageId":"ami-0123456789abcdef0"}}`, []string{"RunInstancesInput.InstanceType: required"}},
		{"bad type", `{"RunInstancesInput":{"ImageId":"ami-0123456789abcdef0","InstanceType":"large"}}`, []string{"RunInstancesInput.InstanceType"}},
		{"bad subnet", `{"RunInstancesInput":{` + ok + `,"SubnetId":"my-subnet"}}`, []string{"RunInstancesInput.SubnetId"}},
		{"sg by name", `{"RunInstancesInput":{` + ok + `,"SecurityGroupIds":["sg-0123abcd","default"]}}`, []string{"RunInstancesInput.SecurityGroupIds[1]"}},
		{"profile both", `{"RunInstancesInput":{` + ok + `,"IamInstanceProfile":{"Name":"a","Arn":"arn:aws:iam::123456789012:instance-profile/a"}}}`, []string{"IamInstanceProfile: set Arn or Name, not both"}},
		{"profile bad arn", `{"RunInstancesInput":{` + ok + `,"IamInstanceProfile":{"Arn":"etcd"}}}`, []string{"IamInstanceProfile.Arn"}},
		{"device missing name", `{"RunInstancesInput":{` + ok + `,"BlockDeviceMappings":[{"Ebs":{"VolumeSize":8}}]}}`, []string{"BlockDeviceMappings[0].DeviceName: required"}},
		{"device twice", `{"RunInstancesInput":{` + ok + `,"BlockDeviceMappings":[{"DeviceName":"/dev/sdb","NoDevice":true},{"DeviceName":"/dev/sdb","NoDevice":true}]}}`, []string{"BlockDeviceMappings[1].DeviceName: \"/dev/sdb\" is mapped twice"}},
		{"device neither", `{"RunInstancesInput":{` + ok + `,"BlockDeviceMappings":[{"DeviceName":"/dev/sdb"}]}}`, []string{"BlockDeviceMappings[0]: set exactly one"}},
		{"volume type", `{"RunInstancesInput":{` + ok + `,"BlockDeviceMappings":[{"DeviceName":"/dev/sdb","Ebs":{"VolumeType":"ssd"}}]}}`, []string{"BlockDeviceMappings[0].Ebs.VolumeType"}},
		{"io2 without iops", `{"RunInstancesInput":{` + ok + `,"BlockDeviceMappings":[{"DeviceName":"/dev/sdb","Ebs":{"VolumeType":"io2"}}]}}`, []string{"Ebs.Iops: required for io2"}},
		{"throughput on gp2", `{"RunInstancesInput":{` + ok + `,"BlockDeviceMappings":[{"DeviceName":"/dev/sdb","Ebs":{"VolumeType":"gp2","Throughput":200}}]}}`, []string{"Ebs.Throughput"}},
		{"kms without encryption", `{"RunInstancesInput":{` + ok + `,"BlockDeviceMappings":[{"DeviceName":"/dev/sdb","Ebs":{"KmsKeyId":"k"}}]}}`, []string{"Ebs.KmsKeyId: set Encrypted"}},
		{"market", `{"RunInstancesInput":{` + ok + `,"InstanceMarketOptions":{"MarketType":"capacity-block"}}}`, []string{"InstanceMarketOptions.MarketType"}},
		{"spot stop one-time", `{"RunInstancesInput":{` + ok + `,"InstanceMarketOptions":{"MarketType":"spot","SpotOptions":{"InstanceInterruptionBehavior":"stop"}}}}`, []string{"InstanceInterruptionBehavior: \"stop\" needs SpotInstanceType \"persistent\""}},
		{"spot price", `{"RunInstancesInput":{` + ok + `,"InstanceMarketOptions":{"MarketType":"spot","SpotOptions":{"MaxPrice":"$1"}}}}`, []string{"SpotOptions.MaxPrice"}},
		{"hop limit", `{"RunInstancesInput":{` + ok + `,"MetadataOptions":{"HttpPutResponseHopLimit":65}}}`, []string{"MetadataOptions.HttpPutResponseHopLimit"}},
		{"shutdown", `{"RunInstancesInput":{` + ok + `,"InstanceInitiatedShutdownBehavior":"hibernate"}}`, []string{"InstanceInitiatedShutdownBehavior"}},
		{"aws tag", `{"RunInstancesInput":{` + ok + `},"Tags":{"aws:cloudformation:stack-name":"x"}}`, []string{`Tags["aws:cloudformation:stack-name"]: tag keys starting with "aws:"`}},
		{"long tag", `{"RunInstancesInput":{` + ok + `},"Tags":{"k":"` + strings.Repeat("v", 257) + `"}}`, []string{`Tags["k"]: tag value longer than 256`}},
		{"several problems", `{"RunInstancesInput":{"ImageId":"x","SubnetId":"y"}}`, []string{"RunInstancesInput.ImageId", "RunInstancesInput.InstanceType", "RunInstancesInput.SubnetId"}},
	}
	p := &Plugin{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Validate(context.Background(), spi.Any(tt.props))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %s", tt.props)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateFieldErrors(t *testing.T) {
	_, err := ParseProperties(spi.Any(`{"RunInstancesInput":{"ImageId":"x","InstanceType":"t3.small"}}`))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "RunInstancesInput.ImageId" {
		t.Fatalf("error %v: want a *FieldError for RunInstancesInput.ImageId", err)
	}
}

func TestTooManyTags(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"RunInstancesInput":{"ImageId":"ami-0123456789abcdef0","InstanceType":"t3.small"},"Tags":{`)
	for i := 0; i < 47; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + string(rune('A'+i%26)) + string(rune('a'+i/26)) + `":"v"`)
	}
	b.WriteString("}}")
	if _, err := ParseProperties(spi.Any(b.String())); err == nil || !strings.Contains(err.Error(), "Tags: 47 tags") {
		t.Fatalf("ParseProperties: %v, want a too-many-tags error", err)
	}
}

func TestInstanceTags(t *testing.T) {
	lid := spi.LogicalID("10.0.0.5")
	props := &Properties{Tags: map[string]string{"team": "a", spi.GroupTag: "wrong", NameTag: "custom"}}
	tags, err := instanceTags(spi.Spec{Tags: map[string]string{spi.GroupTag: "g"}, LogicalID: &lid}, props)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{spi.GroupTag: "g", "team": "a", NameTag: "custom", spi.LogicalIDTag: "10.0.0.5"}
	assertTags(t, tags, want)

	tags, _ = instanceTags(spi.Spec{Tags: map[string]string{spi.GroupTag: "g"}, LogicalID: &lid}, &Properties{})
	if tags[NameTag] != "g-10.0.0.5" {
		t.Errorf("default Name = %q, want g-10.0.0.5", tags[NameTag])
	}
	if _, err := instanceTags(spi.Spec{Tags: map[string]string{"aws:x": "y"}}, &Properties{}); err == nil {
		t.Errorf("an aws: tag from the spec was accepted")
	}
}

func TestPrivateIP(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.5": "10.0.0.5", "etcd-1": "", "fe80::1": "", "": ""} {
		l := spi.LogicalID(in)
		a, ok := privateIP(&l)
		if got := ""; ok {
			got = a.String()
			if got != want {
				t.Errorf("privateIP(%q) = %q, want %q", in, got, want)
			}
		} else if want != "" {
			t.Errorf("privateIP(%q) = none, want %q", in, want)
		}
	}
	if _, ok := privateIP(nil); ok {
		t.Error("privateIP(nil) is an address")
	}
}

func FuzzParseProperties(f *testing.F) {
	f.Add([]byte(`{"RunInstancesInput":{"ImageId":"ami-0123456789abcdef0","InstanceType":"t3.small"}}`))
	f.Add([]byte(`{"RunInstancesInput":{"BlockDeviceMappings":[{"DeviceName":"/dev/sdb","Ebs":{"VolumeType":"io2"}}]},"Image":{}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProperties(spi.Any(b))
		if err == nil && (p == nil || p.Validate() != nil) {
			t.Fatalf("ParseProperties accepted %q but the result does not validate", b)
		}
		if err == nil {
			runInput(p, "ami-0123456789abcdef0", map[string]string{"k": "v"}) // must not panic
		}
	})
}

func TestInstanceArch(t *testing.T) {
	for typ, want := range map[string]string{
		"t3.small": archX86, "m7i.large": archX86, "c5n.xlarge": archX86, "g4dn.xlarge": archX86,
		"p4d.24xlarge": archX86, "x2iedn.xlarge": archX86, "mac1.metal": archX86, "inf2.xlarge": archX86,
		"t4g.nano": archARM, "m7g.large": archARM, "c7g.medium": archARM, "c7gn.large": archARM,
		"m6gd.large": archARM, "r8g.large": archARM, "x2gd.medium": archARM, "im4gn.large": archARM,
		"is4gen.large": archARM, "g5g.xlarge": archARM, "hpc7g.4xlarge": archARM, "a1.medium": archARM,
		"mac2.metal": archARM, "mac2-m2pro.metal": archARM,
	} {
		if got := instanceArch(typ); got != want {
			t.Errorf("instanceArch(%q) = %s, want %s", typ, got, want)
		}
	}
}
