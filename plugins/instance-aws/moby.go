package instanceaws

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
)

// importJob is one background import of a moby image, shared by every Provision that needs it.
type importJob struct {
	done chan struct{}
	res  *ami.Result
	err  error

	mu           sync.Mutex
	phase        string
	doneN, total int64
}

func (j *importJob) progress(phase string, done, total int64) {
	j.mu.Lock()
	j.phase, j.doneN, j.total = phase, done, total
	j.mu.Unlock()
}

func (j *importJob) status() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.phase == "" || j.total == 0 {
		return "starting"
	}
	return fmt.Sprintf("%s %d%%", j.phase, j.doneN*100/j.total)
}

// importMoby returns the AMI of the disk image at path, importing it first when no AMI carries
// its digest. The import runs in the background, shared by concurrent and later calls: a call
// waits at most importWait for it (Provision must answer within InfraKit's client timeout) and
// otherwise fails with the import's progress, so that the group controller provisions again on
// its next pass. A failed import is retried by the next call.
func (p *Plugin) importMoby(ctx context.Context, path string, opts *ImportOptions, arch string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("moby image %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		if _, kerr := os.Stat(abs + "-kernel"); kerr == nil {
			return "", fmt.Errorf("moby image %s is a kernel and initrd, which EC2 cannot boot: set flavor-moby's format to one that writes a raw disk", abs)
		}
		return "", fmt.Errorf("moby image: %w", err)
	}
	// Builds are immutable files in content-keyed folders: path, size and time name the content.
	key := fmt.Sprintf("%s\x00%d\x00%d\x00%s", abs, st.Size(), st.ModTime().UnixNano(), arch)
	p.mu.Lock()
	job := p.imports[key]
	if job == nil {
		job = &importJob{done: make(chan struct{})}
		p.imports[key] = job
		in := ami.Input{Path: abs, Progress: job.progress, Name: "mobykit-" + trimExt(filepath.Base(abs)), Architecture: arch}
		if opts != nil {
			in.BootMode = ami.BootMode(opts.BootMode)
		}
		go func() {
			defer close(job.done)
			// Not the caller's context: the import outlives the Provision call that started it.
			job.res, job.err = p.importer.Import(context.Background(), in)
		}()
	}
	p.mu.Unlock()

	t := time.NewTimer(p.importWait)
	defer t.Stop()
	select {
	case <-job.done:
	case <-t.C:
		return "", fmt.Errorf("importing moby image %s as an AMI (%s); the group provisions again on its next pass", abs, job.status())
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if job.err != nil {
		p.mu.Lock()
		if p.imports[key] == job {
			delete(p.imports, key)
		}
		p.mu.Unlock()
		return "", job.err
	}
	return job.res.ImageID, nil
}

func trimExt(name string) string { return name[:len(name)-len(filepath.Ext(name))] }
