package ami

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"golang.org/x/sync/errgroup"
)

const gib = 1 << 30

// defaultBlockSize is the EBS direct API's block size, the only DataLength PutSnapshotBlock takes.
const defaultBlockSize = 512 * 1024

// uploadEBS writes the file into a new snapshot with the EBS direct API and returns its ID.
// All-zero blocks are not sent: a snapshot block that was never written reads as zeros.
func (im *Importer) uploadEBS(ctx context.Context, in *Input, size int64, tags map[string]string) (string, error) {
	f, err := os.Open(in.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()

	volGiB := (size + gib - 1) / gib
	var etags []ebstypes.Tag
	for _, t := range EC2Tags(tags) {
		etags = append(etags, ebstypes.Tag{Key: t.Key, Value: t.Value})
	}
	start, err := im.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{
		VolumeSize:  aws.Int64(volGiB),
		Description: aws.String(describe(in)),
		Tags:        etags,
		// Minutes before EBS abandons an unfinished snapshot: 10..4320.
		Timeout: aws.Int32(int32(min(max(im.Timeout.Minutes(), 10), 4320))),
	})
	if err != nil {
		return "", fmt.Errorf("StartSnapshot (%d GiB): %w", volGiB, err)
	}
	snap := aws.ToString(start.SnapshotId)
	// PutSnapshotBlock takes 512 KiB blocks only (EBS API reference, DataLength), whatever
	// StartSnapshot reports (some emulators report 512).
	bs := int64(defaultBlockSize)
	if got := int64(aws.ToInt32(start.BlockSize)); got != bs {
		im.log.Debug("StartSnapshot reported an unexpected block size; using 512 KiB", "snapshot", aws.ToString(start.SnapshotId), "block_size", got)
	}
	im.log.Debug("started EBS snapshot", "snapshot", snap, "size_gib", volGiB, "block_size", bs)

	type block struct {
		index int32
		data  []byte
	}
	nblocks := (size + bs - 1) / bs
	var sent, written atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan block, im.parallel())
	g.Go(func() error {
		defer close(work)
		for i := int64(0); i < nblocks; i++ {
			buf := make([]byte, bs) // the tail of the last block stays zero: blocks are always full
			if _, err := io.ReadFull(f, buf); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s block %d: %w", in.Path, i, err)
			}
			if isZero(buf) {
				in.progress("upload", sent.Add(bs), nblocks*bs)
				continue
			}
			select {
			case work <- block{index: int32(i), data: buf}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for w := 0; w < im.parallel(); w++ {
		g.Go(func() error {
			for b := range work {
				sum := sha256.Sum256(b.data)
				done := sent.Load()
				_, err := im.ebs.PutSnapshotBlock(gctx, &ebs.PutSnapshotBlockInput{
					SnapshotId:        aws.String(snap),
					BlockIndex:        aws.Int32(b.index),
					BlockData:         bytes.NewReader(b.data),
					DataLength:        aws.Int32(int32(len(b.data))),
					Checksum:          aws.String(base64.StdEncoding.EncodeToString(sum[:])),
					ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
					Progress:          aws.Int32(int32(done * 100 / (nblocks * bs))),
				})
				if err != nil {
					return fmt.Errorf("PutSnapshotBlock %s block %d: %w", snap, b.index, err)
				}
				written.Add(1)
				in.progress("upload", sent.Add(bs), nblocks*bs)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	if _, err := im.ebs.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
		SnapshotId:         aws.String(snap),
		ChangedBlocksCount: aws.Int32(int32(written.Load())),
	}); err != nil {
		return "", fmt.Errorf("CompleteSnapshot %s: %w", snap, err)
	}
	im.log.Debug("completed EBS snapshot", "snapshot", snap, "blocks_written", written.Load(), "blocks", nblocks)
	return snap, nil
}

func (im *Importer) parallel() int {
	if im.Parallel <= 0 {
		return 1
	}
	return im.Parallel
}

func describe(in *Input) string {
	if in.Description != "" {
		return in.Description
	}
	return "mobykit image " + in.Name + " " + in.Digest
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
