package ami

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/plugins/instance-aws/internal/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const bs = defaultBlockSize

// diskImage writes a sparse-ish test disk: data in blocks 0 and 2 and a short last block 6;
// blocks 1 and 3-5 are zeros. Random bytes make every run's digest unique, so runs sharing one
// moto_server do not reuse each other's AMIs.
func diskImage(t *testing.T) (string, []byte) {
	t.Helper()
	data := make([]byte, 6*bs+100)
	rand.Read(data[:bs])
	rand.Read(data[2*bs : 3*bs])
	rand.Read(data[6*bs:])
	data[510], data[511] = 0x55, 0xAA
	path := filepath.Join(t.TempDir(), "etcd.raw")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// block returns block i of data, zero-padded to the block size.
func block(data []byte, i int) []byte {
	b := make([]byte, bs)
	copy(b, data[i*bs:min(len(data), (i+1)*bs)])
	return b
}

type progressLog struct {
	mu   sync.Mutex
	last map[string][2]int64
	seen map[string]map[int64]bool
}

func (p *progressLog) fn(phase string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last, p.seen = map[string][2]int64{}, map[string]map[int64]bool{}
	}
	if p.seen[phase] == nil {
		p.seen[phase] = map[int64]bool{}
	}
	p.last[phase] = [2]int64{done, total}
	p.seen[phase][done] = true
}

func fastImporter(im *Importer) *Importer {
	im.PollInterval = 10 * time.Millisecond
	im.Timeout = time.Minute
	im.Parallel = 3
	return im
}

// TestMotoImportEBS runs the EBS direct API path against moto_server (which implements
// StartSnapshot, PutSnapshotBlock, CompleteSnapshot, ListSnapshotBlocks, GetSnapshotBlock),
// registers the AMI, reads the blocks back, and imports again to check the digest reuse.
func TestMotoImportEBS(t *testing.T) {
	endpoint := testenv.Moto(t)
	cfg := awstest.Config(t, endpoint)
	im := fastImporter(New(cfg, nil))
	path, data := diskImage(t)
	ctx := context.Background()
	var prog progressLog
	res, err := im.Import(ctx, Input{Path: path, BootMode: BootUEFI, Tags: map[string]string{"team": "storage"}, Progress: prog.fn})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.Reused || !strings.HasPrefix(res.ImageID, "ami-") || !strings.HasPrefix(res.SnapshotID, "snap-") {
		t.Fatalf("Import = %+v", res)
	}
	sum := sha256.Sum256(data)
	wantDigest := "sha256:" + fmt.Sprintf("%x", sum)
	if res.Digest != wantDigest || res.Name != "etcd-"+wantDigest[7:19] {
		t.Errorf("digest %s name %s, want %s and etcd-%s", res.Digest, res.Name, wantDigest, wantDigest[7:19])
	}
	if got := prog.last["upload"]; got[0] != got[1] || got[1] != 7*bs {
		t.Errorf("last upload progress = %v, want %d of %d", got, 7*bs, 7*bs)
	}
	if got := prog.last["snapshot"]; got[0] != 100 {
		t.Errorf("last snapshot progress = %v", got)
	}

	// The non-zero blocks hold the right bytes. (moto's ListSnapshotBlocks answers block
	// indices as strings, which the SDK rightly rejects; TestEBSDirectAPIAsDocumented checks
	// that zero blocks are not sent.)
	eb := ebs.NewFromConfig(cfg)
	for _, i := range []int{0, 2, 6} {
		got, err := eb.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: aws.String(res.SnapshotID), BlockIndex: aws.Int32(int32(i)), BlockToken: aws.String("x")})
		if err != nil {
			t.Fatalf("GetSnapshotBlock %d: %v", i, err)
		}
		b, _ := io.ReadAll(got.BlockData)
		if !bytes.Equal(b, block(data, i)) {
			t.Errorf("block %d differs (%d bytes read)", i, len(b))
		}
		want := sha256.Sum256(block(data, i))
		if aws.ToString(got.Checksum) != base64.StdEncoding.EncodeToString(want[:]) {
			t.Errorf("block %d checksum %s", i, aws.ToString(got.Checksum))
		}
	}

	// The AMI carries the digest and is found by it.
	e2 := ec2.NewFromConfig(cfg)
	imgs, err := e2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{res.ImageID}})
	if err != nil || len(imgs.Images) != 1 {
		t.Fatalf("DescribeImages = %v, %v", imgs, err)
	}
	tags := map[string]string{}
	for _, tg := range imgs.Images[0].Tags {
		tags[*tg.Key] = *tg.Value
	}
	if tags[DigestTag] != wantDigest || tags[NameTag] != "etcd" || tags["team"] != "storage" {
		t.Errorf("image tags = %v", tags)
	}
	if aws.ToString(imgs.Images[0].Name) != res.Name {
		t.Errorf("image name %q, want %q", aws.ToString(imgs.Images[0].Name), res.Name)
	}

	again, err := im.Import(ctx, Input{Path: path})
	if err != nil {
		t.Fatalf("second Import: %v", err)
	}
	if !again.Reused || again.ImageID != res.ImageID || again.SnapshotID != "" {
		t.Errorf("second Import = %+v, want reuse of %s", again, res.ImageID)
	}
}

// fakeEBS answers the EBS direct API (REST + JSON, as in the EBS API reference) and checks
// what a real EBS checks: block checksums, data length, and the changed-block count.
type fakeEBS struct {
	t         *testing.T
	mu        sync.Mutex
	blocks    map[int][]byte
	attempts  map[int]int
	throttled bool
	completed string
	start     map[string]any
}

func (f *fakeEBS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == "POST" && r.URL.Path == "/snapshots":
		json.NewDecoder(r.Body).Decode(&f.start)
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"SnapshotId":"snap-0123456789abcdef0","OwnerId":"123456789012","Status":"pending","StartTime":1.7e9,"VolumeSize":%v,"BlockSize":%d}`, f.start["VolumeSize"], bs)
	case r.Method == "PUT" && len(parts) == 4 && parts[2] == "blocks":
		i, _ := strconv.Atoi(parts[3])
		f.attempts[i]++
		body, _ := io.ReadAll(r.Body)
		if !f.throttled { // the first block put is throttled, as EBS does under load
			f.throttled = true
			w.WriteHeader(400)
			fmt.Fprint(w, `{"__type":"RequestThrottledException","Message":"Rate exceeded","Reason":"ACCOUNT_THROTTLED"}`)
			return
		}
		sum := sha256.Sum256(body)
		if r.Header.Get("x-amz-Checksum") != base64.StdEncoding.EncodeToString(sum[:]) || r.Header.Get("x-amz-Checksum-Algorithm") != "SHA256" {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"__type":"ValidationException","Message":"The checksum is not valid","Reason":"INVALID_CHECKSUM"}`)
			return
		}
		if n, _ := strconv.Atoi(r.Header.Get("x-amz-Data-Length")); n != bs || len(body) != bs {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"__type":"ValidationException","Message":"data length %d/%d","Reason":"INVALID_BLOCK"}`, n, len(body))
			return
		}
		f.blocks[i] = body
		w.Header().Set("x-amz-Checksum", r.Header.Get("x-amz-Checksum"))
		w.Header().Set("x-amz-Checksum-Algorithm", "SHA256")
		w.WriteHeader(201)
		fmt.Fprint(w, `{}`)
	case r.Method == "POST" && len(parts) == 3 && parts[1] == "completion":
		if n, _ := strconv.Atoi(r.Header.Get("x-amz-ChangedBlocksCount")); n != len(f.blocks) {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"__type":"ValidationException","Message":"ChangedBlocksCount %d but %d blocks were written","Reason":"INVALID_PARAMETER_VALUE"}`, n, len(f.blocks))
			return
		}
		f.completed = parts[2]
		w.WriteHeader(202)
		fmt.Fprint(w, `{"Status":"completed"}`)
	default:
		w.WriteHeader(404)
		fmt.Fprintf(w, `{"__type":"ResourceNotFoundException","Message":"%s %s"}`, r.Method, r.URL.Path)
	}
}

// TestEBSDirectAPIAsDocumented checks the block upload against a server that validates as EBS
// does (moto accepts any checksum), including a throttled block that must be re-sent whole.
func TestEBSDirectAPIAsDocumented(t *testing.T) {
	f := &fakeEBS{t: t, blocks: map[int][]byte{}, attempts: map[int]int{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := awstest.Config(t, srv.URL)
	im := fastImporter(WithClients(nil, ebs.NewFromConfig(cfg), nil, nil))
	path, data := diskImage(t)
	in := Input{Path: path, Digest: "sha256:" + strings.Repeat("0", 64)}
	if err := in.defaults(); err != nil {
		t.Fatal(err)
	}
	snap, err := im.uploadEBS(context.Background(), &in, int64(len(data)), map[string]string{DigestTag: in.Digest})
	if err != nil {
		t.Fatalf("uploadEBS: %v", err)
	}
	if snap != "snap-0123456789abcdef0" || f.completed != snap {
		t.Errorf("snapshot %q, completed %q", snap, f.completed)
	}
	if f.start["VolumeSize"] != float64(1) || f.start["Timeout"] != float64(10) {
		t.Errorf("StartSnapshot body = %v, want VolumeSize 1 (GiB) and Timeout 10 (minutes, the least EBS takes)", f.start)
	}
	if tags, _ := f.start["Tags"].([]any); len(tags) != 1 {
		t.Errorf("StartSnapshot tags = %v", f.start["Tags"])
	}
	if len(f.blocks) != 3 {
		t.Fatalf("blocks written: %d, want 3", len(f.blocks))
	}
	for _, i := range []int{0, 2, 6} {
		if !bytes.Equal(f.blocks[i], block(data, i)) {
			t.Errorf("block %d differs", i)
		}
	}
	retried := 0
	for _, n := range f.attempts {
		retried += n - 1
	}
	if retried != 1 {
		t.Errorf("%d blocks re-sent, want exactly the throttled one (attempts %v)", retried, f.attempts)
	}
}

// fakeImportEC2 answers ImportSnapshot and DescribeImportSnapshotTasks as the EC2 API
// reference documents them (moto has neither) and proxies every other EC2 call to moto. On
// ImportSnapshot it checks the S3 object in moto and creates the resulting snapshot in moto.
type fakeImportEC2 struct {
	t      *testing.T
	moto   *httputil.ReverseProxy
	ec2    *ec2.Client
	s3     *s3.Client
	want   []byte
	mu     sync.Mutex
	polls  int
	snap   string
	params url.Values
}

func (f *fakeImportEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	action := form.Get("Action")
	if action != "ImportSnapshot" && action != "DescribeImportSnapshotTasks" {
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.moto.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	xmlns := `xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"`
	switch action {
	case "ImportSnapshot":
		f.params = form
		ctx := context.Background()
		obj, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(form.Get("DiskContainer.UserBucket.S3Bucket")), Key: aws.String(form.Get("DiskContainer.UserBucket.S3Key"))})
		if err != nil {
			w.WriteHeader(400)
			fmt.Fprintf(w, `<Response><Errors><Error><Code>InvalidParameter</Code><Message>S3 object: %s</Message></Error></Errors><RequestID>1</RequestID></Response>`, err)
			return
		}
		got, _ := io.ReadAll(obj.Body)
		if !bytes.Equal(got, f.want) {
			f.t.Errorf("S3 object has %d bytes, not the disk image's %d", len(got), len(f.want))
		}
		vol, err := f.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)})
		if err == nil {
			var s *ec2.CreateSnapshotOutput
			s, err = f.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: vol.VolumeId})
			if err == nil {
				f.snap = aws.ToString(s.SnapshotId)
			}
		}
		if err != nil {
			f.t.Errorf("fake ImportSnapshot: %v", err)
		}
		fmt.Fprintf(w, `<ImportSnapshotResponse %s><requestId>1</requestId><description>%s</description>
<importTaskId>import-snap-1234567890abcdef0</importTaskId>
<snapshotTaskDetail><diskImageSize>0.0</diskImageSize><format>RAW</format><progress>3</progress><status>active</status><statusMessage>pending</statusMessage>
<userBucket><s3Bucket>%s</s3Bucket><s3Key>%s</s3Key></userBucket></snapshotTaskDetail></ImportSnapshotResponse>`,
			xmlns, form.Get("Description"), form.Get("DiskContainer.UserBucket.S3Bucket"), form.Get("DiskContainer.UserBucket.S3Key"))
	case "DescribeImportSnapshotTasks":
		if form.Get("ImportTaskId.1") != "import-snap-1234567890abcdef0" {
			f.t.Errorf("DescribeImportSnapshotTasks for %q", form.Get("ImportTaskId.1"))
		}
		f.polls++
		detail := `<progress>42</progress><status>active</status><statusMessage>converting</statusMessage>`
		if f.polls > 1 {
			detail = `<snapshotId>` + f.snap + `</snapshotId><status>completed</status>`
		}
		fmt.Fprintf(w, `<DescribeImportSnapshotTasksResponse %s><requestId>2</requestId><importSnapshotTaskSet><item>
<importTaskId>import-snap-1234567890abcdef0</importTaskId><snapshotTaskDetail><diskImageSize>3146340.0</diskImageSize><format>RAW</format>%s
</snapshotTaskDetail></item></importSnapshotTaskSet></DescribeImportSnapshotTasksResponse>`, xmlns, detail)
	}
}

// TestImportS3 uploads to moto's S3 and runs ImportSnapshot against the documented fake,
// with the rest of EC2 (snapshots, RegisterImage, tags) on moto.
func TestImportS3(t *testing.T) {
	t.Run("PutObject", func(t *testing.T) {
		path, data := diskImage(t)
		testImportS3(t, path, data, 0)
	})
	t.Run("multipart", func(t *testing.T) {
		data := make([]byte, 11<<20+3) // parts of 5, 5 and 1 MiB
		rand.Read(data)
		data[510], data[511] = 0x55, 0xAA
		path := filepath.Join(t.TempDir(), "big.raw")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		testImportS3(t, path, data, 5<<20)
	})
}

func testImportS3(t *testing.T, path string, data []byte, partSize int64) {
	endpoint := testenv.Moto(t)
	cfg := awstest.Config(t, endpoint)
	ctx := context.Background()
	motoURL, _ := url.Parse(endpoint)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := fmt.Sprintf("mobykit-images-%d", time.Now().UnixNano())
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	fake := &fakeImportEC2{t: t, moto: httputil.NewSingleHostReverseProxy(motoURL), ec2: ec2.NewFromConfig(cfg), s3: s3c, want: data}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	e2 := ec2.NewFromConfig(awstest.Config(t, srv.URL))
	im := fastImporter(WithClients(e2, nil, s3c, nil))
	im.PartSize = partSize
	var prog progressLog
	res, err := im.Import(ctx, Input{Path: path, Method: MethodS3, Bucket: bucket, BootMode: BootLegacyBIOS, Progress: prog.fn})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.SnapshotID != fake.snap || res.Reused {
		t.Errorf("Import = %+v, want snapshot %s", res, fake.snap)
	}
	p := fake.params
	if p.Get("DiskContainer.Format") != "RAW" || p.Get("RoleName") != "vmimport" || p.Get("DiskContainer.UserBucket.S3Key") != "mobykit/"+res.Digest[7:]+".raw" {
		t.Errorf("ImportSnapshot params = %v", p)
	}
	if p.Get("TagSpecification.1.ResourceType") != "import-snapshot-task" {
		t.Errorf("ImportSnapshot tag specification = %v", p)
	}
	head, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("mobykit/" + res.Digest[7:] + ".raw")})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	// S3 gives multipart objects an ETag ending in -<parts>.
	if multi := strings.HasSuffix(strings.Trim(aws.ToString(head.ETag), `"`), "-3"); multi != (partSize > 0) {
		t.Errorf("ETag %s: multipart upload in 3 parts = %v, want %v", aws.ToString(head.ETag), multi, partSize > 0)
	}
	if !prog.seen["snapshot"][42] {
		t.Errorf("progress never reported the task's 42%%: %v", prog.seen["snapshot"])
	}
	if got := prog.last["upload"]; got[0] != int64(len(data)) {
		t.Errorf("upload progress = %v", got)
	}
	// The snapshot and the AMI (both in moto) carry the digest.
	snaps, err := fake.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{res.SnapshotID}})
	if err != nil || len(snaps.Snapshots) != 1 || !hasTag(snaps.Snapshots[0].Tags, DigestTag, res.Digest) {
		t.Errorf("snapshot = %+v, %v; want the digest tag", snaps, err)
	}
	again, err := im.Import(ctx, Input{Path: path, Method: MethodS3, Bucket: bucket})
	if err != nil || !again.Reused || again.ImageID != res.ImageID {
		t.Errorf("second Import = %+v, %v; want reuse of %s", again, err, res.ImageID)
	}
	if fake.polls != 2 {
		t.Errorf("import task polled %d times, want 2 (the second import must not import)", fake.polls)
	}
}

func hasTag(tags []types.Tag, k, v string) bool {
	for _, t := range tags {
		if aws.ToString(t.Key) == k && aws.ToString(t.Value) == v {
			return true
		}
	}
	return false
}

func TestInputDefaultsAndErrors(t *testing.T) {
	tests := []struct {
		in   Input
		want string
	}{
		{Input{}, "Path is required"},
		{Input{Path: "a.raw", BootMode: "efi"}, `boot mode "efi"`},
		{Input{Path: "a.raw", Architecture: "i386"}, `architecture "i386"`},
		{Input{Path: "a.raw", Architecture: "arm64", BootMode: BootLegacyBIOS}, "arm64 AMIs boot with uefi only"},
		{Input{Path: "a.raw", Method: MethodS3}, "method s3 needs a bucket"},
		{Input{Path: "a.raw", Method: "ftp"}, `method "ftp"`},
		{Input{Path: "a.raw", Digest: "abc"}, "is not sha256"},
		{Input{Path: "/x/etcd.img"}, ""},
		{Input{Path: "/x/kernel+initrd:v1.img"}, "name kernel-initrd-v1"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			err := tt.in.defaults()
			if want, ok := strings.CutPrefix(tt.want, "name "); ok {
				if err != nil || tt.in.Name != want {
					t.Errorf("name %q (%v), want %q", tt.in.Name, err, want)
				}
				return
			}
			if tt.want == "" {
				if err != nil || tt.in.Name != "etcd" || tt.in.BootMode != BootUEFIPreferred || tt.in.Method != MethodEBS || tt.in.RootDeviceName != "/dev/xvda" {
					t.Errorf("defaults: %v %+v", err, tt.in)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNewest(t *testing.T) {
	imgs := []types.Image{
		{ImageId: aws.String("ami-1"), CreationDate: aws.String("2026-01-01T00:00:00.000Z")},
		{ImageId: aws.String("ami-3"), CreationDate: aws.String("2026-03-01T00:00:00.000Z")},
		{ImageId: aws.String("ami-2"), CreationDate: aws.String("2026-02-01T00:00:00.000Z")},
	}
	if got := aws.ToString(Newest(imgs).ImageId); got != "ami-3" {
		t.Errorf("Newest = %s", got)
	}
	if Newest(nil) != nil {
		t.Error("Newest(nil) != nil")
	}
}

func TestCheckDisk(t *testing.T) {
	dir := t.TempDir()
	disk := make([]byte, 1024)
	disk[510], disk[511] = 0x55, 0xAA
	qcow := append([]byte("QFI\xfb"), make([]byte, 1020)...)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"mbr":   {disk, ""},
		"qcow2": {qcow, "qcow2"},
		"cpio":  {append([]byte("070701"), make([]byte, 1000)...), "no MBR or GPT boot signature"},
		"tiny":  {[]byte{1, 2, 3}, "shorter than one sector"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			os.WriteFile(p, tc.data, 0o644)
			err := CheckDisk(p)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CheckDisk = %v, want %q", err, tc.want)
			}
		})
	}
	// Import refuses before any AWS call (the importer has no clients).
	p := filepath.Join(dir, "cpio")
	if _, err := WithClients(nil, nil, nil, nil).Import(context.Background(), Input{Path: p, Digest: "sha256:" + strings.Repeat("1", 64)}); err == nil || !strings.Contains(err.Error(), "not a raw disk image") {
		t.Errorf("Import of a cpio archive: %v", err)
	}
}
