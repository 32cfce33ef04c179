package supervise

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSpawnAlone(t *testing.T) {
	res, err := Spawn(t.Context(), []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, SpawnOptions{Env: os.Environ()})
	if err != nil || res.Status != 3 || res.Output != "out\nerr\n" || res.TimedOut {
		t.Fatalf("Spawn = %+v, %v", res, err)
	}
	res, err = Spawn(t.Context(), []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, SpawnOptions{Env: os.Environ(), Timeout: 100 * time.Millisecond})
	if err != nil || !res.TimedOut || res.Status != 128+9 {
		t.Fatalf("Spawn of a command that hangs = %+v, %v", res, err)
	}
	if _, err := Spawn(t.Context(), []string{"no-such-command-here"}, SpawnOptions{Env: os.Environ()}); err == nil {
		t.Error("Spawn of a missing command: no error")
	}
}

// Beside Run, whose reaper takes every child, Spawn still gets its
// command's status.
func TestSpawnBesideRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Argv: []string{"/bin/sh", "-c", "exec sleep 30"}, Env: os.Environ(), Signals: make(chan os.Signal),
			OnStart: func(int) { close(started) }, StopTimeout: time.Second})
	}()
	<-started
	for i := range 20 {
		res, err := Spawn(t.Context(), []string{"/bin/sh", "-c", "echo hi; exit 4"}, SpawnOptions{Env: os.Environ()})
		if err != nil || res.Status != 4 || strings.TrimSpace(res.Output) != "hi" {
			t.Fatalf("Spawn %d beside Run = %+v, %v", i, res, err)
		}
	}
	cancel()
	<-done
}

// OnTerm hears every SIGTERM, also one during a stop already under way
// (man8s-init then does not restart an app it was told to stop).
func TestOnTerm(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	terms := 0
	started := make(chan struct{})
	go func() {
		<-started
		time.Sleep(300 * time.Millisecond)
		sigs <- syscall.SIGTERM
		sigs <- syscall.SIGTERM
	}()
	status, err := Run(t.Context(), Options{Argv: []string{"/bin/sh", "-c", "trap 'sleep 0.2; exit 0' TERM; while :; do sleep 0.05; done"}, Env: os.Environ(),
		Signals: sigs, OnStart: func(int) { close(started) }, OnTerm: func() { terms++ }})
	if err != nil || status != 0 || terms != 2 {
		t.Errorf("status %d, %v, OnTerm called %d times, want 2", status, err, terms)
	}
}
