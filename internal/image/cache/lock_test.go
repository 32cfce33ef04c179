package cache

import (
	"bufio"
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestAcquireSemantics(t *testing.T) {
	tests := []struct {
		name         string
		held, wanted bool // shared?
		blocks       bool
	}{
		{name: "shared then shared", held: true, wanted: true, blocks: false},
		{name: "shared then exclusive", held: true, wanted: false, blocks: true},
		{name: "exclusive then shared", held: false, wanted: true, blocks: true},
		{name: "exclusive then exclusive", held: false, wanted: false, blocks: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			release, err := c.Acquire(context.Background(), tc.held)
			if err != nil {
				t.Fatal(err)
			}
			defer release()

			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			rel2, err := c.Acquire(ctx, tc.wanted)
			if !tc.blocks {
				if err != nil {
					t.Fatalf("second Acquire() = %v, want success", err)
				}
				rel2()
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second Acquire() = %v, want it to block until the deadline", err)
			}

			// Once the holder releases, a waiter gets the lock.
			waiting := make(chan struct{})
			c.lockWaiting = sync.OnceFunc(func() { close(waiting) })
			got := make(chan error, 1)
			go func() {
				rel, err := c.Acquire(context.Background(), tc.wanted)
				if err == nil {
					rel()
				}
				got <- err
			}()
			select {
			case err := <-got:
				t.Fatalf("Acquire() returned %v while the lock was held", err)
			case <-waiting:
			case <-time.After(5 * time.Second):
				t.Fatal("the waiter neither waited nor returned")
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			if err := release(); err != nil {
				t.Errorf("second release() = %v", err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waiter did not get the lock after release")
			}
		})
	}
}

func TestAcquireCancel(t *testing.T) {
	c := newCache(t)
	release, err := c.Acquire(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	c.lockWaiting = sync.OnceFunc(func() { close(waiting) })
	got := make(chan error, 1)
	go func() {
		_, err := c.Acquire(ctx, true)
		got <- err
	}()
	select {
	case <-waiting: // blocked on the lock: now cancel
	case err := <-got:
		t.Fatalf("Acquire() = %v while the lock was held", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire neither waited nor returned")
	}
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Acquire() = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return after cancel")
	}

	// An already cancelled context fails even when the lock is free.
	release()
	if _, err := c.Acquire(ctx, true); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire(cancelled ctx) = %v", err)
	}
}

func TestAcquireOtherProcess(t *testing.T) {
	c := newCache(t)
	cmd := helper(t, "lock", c.Dir(), "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Acquire(ctx, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire() while another process holds the lock = %v", err)
	}
	// The kernel releases the lock of a killed process.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release, err := c.Acquire(ctx, true)
	if err != nil {
		t.Fatalf("Acquire() after the holder died = %v", err)
	}
	release()
}
