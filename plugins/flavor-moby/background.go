package flavormoby

import (
	"context"
	"errors"
	"sync"
)

// errClosed is returned for work asked of a closed plugin.
var errClosed = errors.New("flavor-moby: plugin is closed")

// background runs the plugin's background jobs (image builds) under one context, which Close
// cancels before waiting for every job to return. Every goroutine the plugin starts goes
// through Go, so that stopping the plugin leaves nothing running.
type background struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

func newBackground() *background {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{ctx: ctx, cancel: cancel}
}

// Go runs fn in a new goroutine with the background context, or returns errClosed once Close
// has been called.
func (b *background) Go(fn func(ctx context.Context)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn(b.ctx)
	}()
	return nil
}

// Close cancels the background context and waits for the jobs to return. It is safe to call
// more than once.
func (b *background) Close() {
	b.mu.Lock()
	b.closed = true
	b.cancel()
	b.mu.Unlock()
	b.wg.Wait()
}
