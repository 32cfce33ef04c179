package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Acquire takes the cache lock, DIR/lock: shared (any number of holders;
// what a pull holds for its whole duration) or exclusive (what Prune and
// Clear hold). It waits while a conflicting lock is held, polling every
// 50 ms, and gives up with ctx's error when ctx is done. The returned
// function releases the lock; calling it more than once is harmless.
//
// The lock is an flock(2) lock on its own open file, so it conflicts with
// other holders in the same process as well as in other processes, and the
// kernel releases it when a process dies. It also means a goroutine that
// holds the shared lock must not wait for the exclusive one (Prune, Clear):
// it would wait for itself until ctx ends.
func (c *Cache) Acquire(ctx context.Context, shared bool) (release func() error, err error) {
	how, kind := unix.LOCK_EX, "exclusive"
	if shared {
		how, kind = unix.LOCK_SH, "shared"
	}
	p := filepath.Join(c.dir, lockFile)
	f, err := lockWait(ctx, p, how, c.lockWaiting)
	if err != nil {
		return nil, fmt.Errorf("taking %s lock on %s: %w", kind, p, err)
	}
	var once sync.Once
	var cerr error
	return func() error {
		once.Do(func() { cerr = f.Close() })
		return cerr
	}, nil
}

// lockWait opens (creating if needed) the lock file p and flocks it with
// how, polling until it succeeds or ctx is done.
func lockWait(ctx context.Context, p string, how int, waiting func()) (*os.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Read-only is enough for flock, and lets users who may read but not
	// write the cache take the shared lock.
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, filePerm)
	if err != nil {
		return nil, err
	}
	var timer *time.Timer
	for {
		err := flock(f, how|unix.LOCK_NB)
		if err == nil {
			if timer != nil {
				timer.Stop()
			}
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		if timer == nil {
			if waiting != nil {
				waiting()
			}
			timer = time.NewTimer(lockPollTime)
		} else {
			timer.Reset(lockPollTime)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func flock(f *os.File, how int) error {
	return onFD(f, func(fd int) error { return unix.Flock(fd, how) })
}

// onFD runs op on f's descriptor, again as long as it fails with EINTR.
func onFD(f *os.File, op func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		for {
			if opErr = op(int(fd)); opErr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return opErr
}

// lockIndex takes the exclusive index lock, DIR/index.lock, which is held
// only for the read-modify-write of index.json. It blocks without a
// context: holders keep it for milliseconds.
func (c *Cache) lockIndex() (unlock func(), err error) {
	p := filepath.Join(c.dir, indexLock)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, filePerm)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	return func() { _ = f.Close() }, nil
}
