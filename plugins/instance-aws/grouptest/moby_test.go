package grouptest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/pkgbuild"
	flavormoby "github.com/mobykit/mobykit/plugins/flavor-moby"
	instanceaws "github.com/mobykit/mobykit/plugins/instance-aws"
	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/plugins/instance-aws/internal/awstest"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// buildSystemImages builds the images a format-aws member needs (kernel, init, runc and the
// bootloader the BIOS disk takes) into the image cache, tagged by input hash, so only the
// first run pays.
func buildSystemImages(t *testing.T) {
	t.Helper()
	c, err := image.OpenCache(os.Getenv("MOBYKIT_CACHE"))
	if err != nil {
		t.Fatal(err)
	}
	b := &pkgbuild.Builder{Cache: c, WorkDir: pkgbuild.DefaultWorkDir(), Log: slog.Default()}
	for _, d := range []string{"images/kernel", "images/init", "images/runc", "images/bootloader"} {
		r, err := pkgbuild.LoadRecipe(filepath.Join("../../..", d))
		if err != nil {
			t.Fatalf("recipe %s: %v", d, err)
		}
		if _, err := b.Build(context.Background(), r); err != nil {
			t.Fatalf("pkg build %s: %v", d, err)
		}
	}
}

// TestMobyAWSGroupOnMoto is the EC2 flow end to end: a group whose flavor is flavor-moby,
// building format aws (the raw BIOS disk an AMI import takes), and whose instance plugin is
// instance-aws, driven by the group controller through unix sockets. A commit builds the
// image, imports it once (a snapshot and an AMI tagged with the image's digest) and launches
// the members from it; a changed spec imports the new image once and rolls the members onto
// it; committing the same spec again imports nothing and replaces nobody. Every assertion
// reads moto's state directly.
func TestMobyAWSGroupOnMoto(t *testing.T) {
	endpoint := testenv.Moto(t)
	if testing.Short() {
		t.Skip("builds a 1 GiB disk image")
	}
	buildSystemImages(t)
	ctx := context.Background()
	raw := ec2.NewFromConfig(awstest.Config(t, endpoint))
	_, subnetID := createSubnet(t, raw, "10.30.0.0/16", "10.30.1.0/24")

	h := newHarness(t, "mkmoby")
	plugin := h.openAWS(t, ctx, instanceaws.Options{Endpoint: endpoint, MaxBackoff: 10 * time.Millisecond})
	fm, err := flavormoby.New(filepath.Join(h.dir, "flavor"), flavormoby.AssemblerBuilder{CacheDir: os.Getenv("MOBYKIT_CACHE")}, h.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fm.Close() })
	gc := h.serve(t, ctx, map[string]rpc.Plugin{"instance-aws": rpc.Instance(plugin), "flavor-moby": rpc.Flavor(fm)}, 100*time.Millisecond)

	groupID := fmt.Sprintf("moby-%d", time.Now().UnixNano())
	spec := func(cmdline string) spi.GroupSpec {
		props, err := json.Marshal(map[string]any{
			"Allocation": map[string]any{"Size": 2},
			"Instance": map[string]any{"Plugin": "instance-aws", "Properties": map[string]any{
				"RunInstancesInput": map[string]any{"InstanceType": "t3.micro", "SubnetId": subnetID},
				"Import":            map[string]any{"BootMode": "legacy-bios"},
			}},
			"Flavor": map[string]any{"Plugin": "flavor-moby", "Properties": map[string]any{
				"format": "aws",
				// The group ID on the command line makes the images this run's own: builds are
				// reproducible, and a moto_server may outlive one test run.
				"spec_yaml": fmt.Sprintf("kernel:\n  image: mobykit/kernel:latest\n  cmdline: %q\n"+
					"init:\n  - mobykit/init:latest\n  - mobykit/runc:latest\n", cmdline+" mobykit.test="+groupID),
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return spi.GroupSpec{ID: spi.GroupID(groupID), Properties: props}
	}
	// amis lists the AMIs (and their snapshots) mobykit imported: those tagged with a digest.
	amis := func() map[string][]string {
		out, err := raw.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
			Filters: []types.Filter{{Name: aws.String("tag-key"), Values: []string{ami.DigestTag}}}})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string][]string{} // digest -> AMI IDs
		for _, img := range out.Images {
			for _, tg := range img.Tags {
				if aws.ToString(tg.Key) == ami.DigestTag {
					m[aws.ToString(tg.Value)] = append(m[aws.ToString(tg.Value)], aws.ToString(img.ImageId))
				}
			}
		}
		return m
	}
	before := amis()
	// converged waits for two members, all from one AMI carrying the commit's config hash, and
	// returns the AMI and the members.
	converged := func(what string, notImage string) (string, []member) {
		t.Helper()
		var ms []member
		waitFor(t, what, 3*time.Minute, func() bool {
			ms = live(t, raw, groupID)
			st, err := gc.UpdateStatus(ctx, spi.GroupID(groupID))
			if err != nil {
				t.Fatalf("UpdateStatus: %v", err)
			}
			if len(ms) != 2 || st.Phase != "idle" {
				return false
			}
			for _, m := range ms {
				if m.hash != st.TargetHash || m.image != ms[0].image || m.image == notImage {
					return false
				}
			}
			return true
		})
		return ms[0].image, ms
	}
	// newImports returns the digests imported since before, each of which must have exactly
	// one AMI.
	newImports := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		for d, ids := range amis() {
			if len(before[d]) > 0 {
				continue
			}
			if len(ids) != 1 {
				t.Errorf("digest %s has %d AMIs %v, want 1", d, len(ids), ids)
			}
			got[d] = ids[0]
		}
		return got
	}

	// 1. Commit: flavor-moby builds the disk, instance-aws imports it once, two members run it.
	start := time.Now()
	if _, err := gc.CommitGroup(ctx, spec("console=ttyS0"), false); err != nil {
		t.Fatalf("CommitGroup: %v", err)
	}
	ami1, first := converged("2 members from the imported image", "")
	imports := newImports()
	if len(imports) != 1 {
		t.Fatalf("after the first commit: imports %v, want one", imports)
	}
	for d, id := range imports {
		if id != ami1 {
			t.Errorf("members run %s, the AMI of the built image (%s) is %s", ami1, d, id)
		}
		snaps, err := raw.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"},
			Filters: []types.Filter{{Name: aws.String("tag:" + ami.DigestTag), Values: []string{d}}}})
		if err != nil || len(snaps.Snapshots) != 1 {
			t.Errorf("snapshots tagged %s: %d (%v), want 1", d, len(snaps.Snapshots), err)
		}
	}
	t.Logf("build + import + 2 members: %s", time.Since(start).Round(time.Millisecond))

	// 2. A changed spec: a new image, imported once, and the members rolled onto it.
	start = time.Now()
	if _, err := gc.CommitGroup(ctx, spec("console=ttyS0 quiet"), false); err != nil {
		t.Fatalf("CommitGroup v2: %v", err)
	}
	ami2, second := converged("the members rolled onto the new image", ami1)
	imports = newImports()
	if len(imports) != 2 {
		t.Fatalf("after the second commit: imports %v, want two", imports)
	}
	for _, m := range second {
		for _, o := range first {
			if m.id == o.id {
				t.Errorf("member %s survived the rolling update", m.id)
			}
		}
	}
	t.Logf("build + import + roll: %s (AMI %s -> %s)", time.Since(start).Round(time.Millisecond), ami1, ami2)

	// 3. The same spec again: nothing imported, nobody replaced.
	if _, err := gc.CommitGroup(ctx, spec("console=ttyS0 quiet"), false); err != nil {
		t.Fatalf("CommitGroup v2 again: %v", err)
	}
	again, third := converged("the group idle on the same image", "")
	time.Sleep(time.Second) // a few controller passes, in which nothing may change
	if now := newImports(); len(now) != 2 || again != ami2 {
		t.Errorf("after committing the same spec: imports %v, members on %s; want the same two imports, %s", now, again, ami2)
	}
	if ms := live(t, raw, groupID); len(ms) != 2 || ms[0].id != third[0].id || ms[1].id != third[1].id || third[0].id != second[0].id || third[1].id != second[1].id {
		t.Errorf("members after committing the same spec %+v, want %+v unchanged", ms, second)
	}

	destroy(t, gc, raw, groupID)
}
