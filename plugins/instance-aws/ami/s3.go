package ami

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// importS3 uploads the file to S3, starts ImportSnapshot and waits for the import task; it
// returns the snapshot ID.
func (im *Importer) importS3(ctx context.Context, in *Input, size int64, tags map[string]string) (string, error) {
	key := in.Key
	if key == "" {
		key = "mobykit/" + strings.TrimPrefix(in.Digest, "sha256:") + ".raw"
	}
	f, err := os.Open(in.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	in.progress("upload", 0, size)
	if size <= im.partSize() {
		if _, err := im.s3.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(in.Bucket),
			Key:           aws.String(key),
			Body:          f,
			ContentLength: aws.Int64(size),
			Metadata:      map[string]string{"digest": in.Digest},
		}); err != nil {
			return "", fmt.Errorf("PutObject s3://%s/%s: %w", in.Bucket, key, err)
		}
	} else if err := im.multipart(ctx, in, f, size, key); err != nil {
		return "", err
	}
	in.progress("upload", size, size)
	im.log.Debug("uploaded disk image", "bucket", in.Bucket, "key", key, "bytes", size)

	out, err := im.ec2.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
		Description: aws.String(describe(in)),
		DiskContainer: &types.SnapshotDiskContainer{
			Format:      aws.String("RAW"),
			Description: aws.String(describe(in)),
			UserBucket:  &types.UserBucket{S3Bucket: aws.String(in.Bucket), S3Key: aws.String(key)},
		},
		RoleName:          aws.String(in.RoleName),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImportSnapshotTask, Tags: EC2Tags(tags)}},
	})
	if err != nil {
		return "", fmt.Errorf("ImportSnapshot s3://%s/%s: %w", in.Bucket, key, err)
	}
	task := aws.ToString(out.ImportTaskId)
	im.log.Debug("started snapshot import", "task", task)
	return im.waitImportTask(ctx, in, task)
}

// waitImportTask polls DescribeImportSnapshotTasks until the task completes.
func (im *Importer) waitImportTask(ctx context.Context, in *Input, task string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, im.Timeout)
	defer cancel()
	for {
		out, err := im.ec2.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			return "", fmt.Errorf("wait for import task %s: DescribeImportSnapshotTasks: %w", task, err)
		}
		if len(out.ImportSnapshotTasks) == 1 && out.ImportSnapshotTasks[0].SnapshotTaskDetail != nil {
			d := out.ImportSnapshotTasks[0].SnapshotTaskDetail
			switch status := aws.ToString(d.Status); status {
			case "completed":
				if aws.ToString(d.SnapshotId) == "" {
					return "", fmt.Errorf("import task %s completed without a snapshot ID", task)
				}
				in.progress("snapshot", 100, 100)
				return aws.ToString(d.SnapshotId), nil
			case "deleting", "deleted", "error":
				return "", fmt.Errorf("import task %s %s: %s", task, status, aws.ToString(d.StatusMessage))
			default:
				in.progress("snapshot", parsePercent(aws.ToString(d.Progress)), 100)
			}
		}
		if err := sleep(ctx, im.PollInterval); err != nil {
			return "", fmt.Errorf("wait for import task %s: %w", task, err)
		}
	}
}

// Multipart limits of S3: parts of 5 MiB to 5 GiB, at most 10,000 of them.
const (
	minPartSize = 5 << 20
	maxParts    = 10000
)

func (im *Importer) partSize() int64 {
	if im.PartSize < minPartSize {
		return 64 << 20
	}
	return im.PartSize
}

// multipart uploads the file in parts, Parallel at a time, each read from the file by offset
// (a seekable body, so retries resend it), and aborts the upload on failure.
func (im *Importer) multipart(ctx context.Context, in *Input, f *os.File, size int64, key string) error {
	ps := im.partSize()
	for (size+ps-1)/ps > maxParts {
		ps *= 2
	}
	where := fmt.Sprintf("s3://%s/%s", in.Bucket, key)
	up, err := im.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(in.Bucket), Key: aws.String(key), Metadata: map[string]string{"digest": in.Digest},
	})
	if err != nil {
		return fmt.Errorf("CreateMultipartUpload %s: %w", where, err)
	}
	n := int((size + ps - 1) / ps)
	parts := make([]s3types.CompletedPart, n)
	var sent atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(im.parallel())
	for i := 0; i < n; i++ {
		off := int64(i) * ps
		length := min(ps, size-off)
		g.Go(func() error {
			out, err := im.s3.UploadPart(gctx, &s3.UploadPartInput{
				Bucket: aws.String(in.Bucket), Key: aws.String(key), UploadId: up.UploadId,
				PartNumber:    aws.Int32(int32(i + 1)),
				Body:          io.NewSectionReader(f, off, length),
				ContentLength: aws.Int64(length),
			})
			if err != nil {
				return fmt.Errorf("UploadPart %s part %d: %w", where, i+1, err)
			}
			parts[i] = s3types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			in.progress("upload", sent.Add(length), size)
			return nil
		})
	}
	err = g.Wait()
	if err == nil {
		_, err = im.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: aws.String(in.Bucket), Key: aws.String(key), UploadId: up.UploadId,
			MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts},
		})
		if err != nil {
			err = fmt.Errorf("CompleteMultipartUpload %s: %w", where, err)
		}
	}
	if err != nil {
		// Parts of an unfinished upload are billed until aborted.
		if _, aerr := im.s3.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
			Bucket: aws.String(in.Bucket), Key: aws.String(key), UploadId: up.UploadId,
		}); aerr != nil {
			im.log.Warn("could not abort the multipart upload", "upload", aws.ToString(up.UploadId), "err", aerr)
		}
		return err
	}
	im.log.Debug("multipart upload done", "where", where, "parts", n, "part_size", ps)
	return nil
}
