package ami

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// maxPutObject is S3's single-PUT limit.
const maxPutObject = 5 * gib

// importS3 uploads the file to S3, starts ImportSnapshot and waits for the import task; it
// returns the snapshot ID.
func (im *Importer) importS3(ctx context.Context, in *Input, size int64, tags map[string]string) (string, error) {
	if size > maxPutObject {
		return "", fmt.Errorf("%d bytes: method s3 uploads with one PutObject (at most 5 GiB); use method ebs", size)
	}
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
	if _, err := im.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(in.Bucket),
		Key:           aws.String(key),
		Body:          f,
		ContentLength: aws.Int64(size),
		Metadata:      map[string]string{"digest": in.Digest},
	}); err != nil {
		return "", fmt.Errorf("PutObject s3://%s/%s: %w", in.Bucket, key, err)
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
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImportSnapshotTask, Tags: ec2Tags(tags)}},
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
