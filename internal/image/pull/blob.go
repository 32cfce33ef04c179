package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// blob is one layer blob on its way into the cache. The applier may start
// on it before it is complete: it follows the temp file the download writes
// (page cache, no second copy), and sees the end of the stream only once the
// download has been verified and committed. A layer applied from a blob
// that then fails verification fails the whole pull, as any other error.
type blob struct {
	mu      sync.Mutex
	changed *sync.Cond
	temp    *os.File // the download's temp file, opened for reading
	path    string   // the verified blob in the cache
	written int64    // bytes in temp so far
	err     error    // the download failed
}

func newBlob() *blob {
	b := &blob{}
	b.changed = sync.NewCond(&b.mu)
	return b
}

// started records that the download writes to the file tempName.
func (b *blob) started(tempName string) error {
	f, err := os.Open(tempName)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.temp = f
	b.mu.Unlock()
	b.changed.Broadcast()
	return nil
}

// grew records that n more bytes are in the temp file.
func (b *blob) grew(n int64) {
	b.mu.Lock()
	b.written += n
	b.mu.Unlock()
	b.changed.Broadcast()
}

// ready records that the blob is in the cache at path, verified.
func (b *blob) ready(path string) {
	b.mu.Lock()
	b.path = path
	b.mu.Unlock()
	b.changed.Broadcast()
}

// failed records why the blob will never be ready.
func (b *blob) failed(err error) {
	b.mu.Lock()
	if b.path == "" && b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	b.changed.Broadcast()
}

// readyPath returns the verified blob's path in the cache, or "" if it is
// not there yet.
func (b *blob) readyPath() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.path
}

// open returns a reader of the blob as soon as one can be had: the cached
// file, or the download's temp file followed as it grows.
func (b *blob) open() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.path == "" && b.temp == nil && b.err == nil {
		b.changed.Wait()
	}
	switch {
	case b.err != nil:
		return nil, b.err
	case b.temp != nil:
		return &follower{b: b}, nil
	}
	return os.Open(b.path)
}

// close releases the temp file descriptor.
func (b *blob) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.temp != nil {
		b.temp.Close()
		b.temp = nil
	}
}

// follower reads a blob's temp file while the download writes it.
type follower struct {
	b   *blob
	off int64
}

func (r *follower) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	for r.off >= b.written && b.path == "" && b.err == nil {
		b.changed.Wait()
	}
	avail, done, err := b.written-r.off, b.path != "", b.err
	b.mu.Unlock()
	if avail <= 0 {
		switch {
		case err != nil:
			return 0, fmt.Errorf("downloading: %w", err)
		case done:
			return 0, io.EOF
		}
	}
	n, rerr := b.temp.ReadAt(p[:min(int64(len(p)), avail)], r.off)
	r.off += int64(n)
	if errors.Is(rerr, io.EOF) {
		rerr = nil // more may come; the blob's state says when it ends
	}
	return n, rerr
}

func (r *follower) Close() error { return nil }

// growWriter tells b about every write that reached the temp file.
type growWriter struct {
	w io.Writer
	b *blob
}

func (g growWriter) Write(p []byte) (int, error) {
	n, err := g.w.Write(p)
	if n > 0 {
		g.b.grew(int64(n))
	}
	return n, err
}

// failOnDone makes a blocked open or Read return when ctx ends: the downloads
// end with ctx too and mark their blobs failed, but a blob whose download
// never started needs this nudge.
func (b *blob) failOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { b.failed(context.Cause(ctx)) })
}
