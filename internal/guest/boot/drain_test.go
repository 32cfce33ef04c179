package boot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/drain"
)

func TestDrainTimeout(t *testing.T) {
	for _, tt := range []struct {
		value   string
		want    time.Duration
		wantErr bool
	}{
		{"", drain.DefaultTimeout, false},
		{"0", 0, false},
		{" 0s ", 0, false},
		{"2", 2 * time.Second, false},
		{"1.5s", 1500 * time.Millisecond, false},
		{"-1", 0, true},
		{"soon", 0, true},
	} {
		got, err := drainTimeout(map[string]string{man8env.KeyDrainTimeout: tt.value})
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("drainTimeout(%q) = %v, %v; want %v, error %v", tt.value, got, err, tt.want, tt.wantErr)
		}
	}
}

// drainCall is what a fake drain saw.
type drainCall struct {
	opts drain.Options
	err  error // ctx's error when it returned
}

// Run's last step: the drain after the app, with MAN8S_DRAIN_TIMEOUT as
// its bound, or what a stop leaves of MAN8S_STOP_TIMEOUT; off with 0; a
// SIGTERM during the wait ends it; none when the app never ran.
func TestRunDrainsAfterTheApp(t *testing.T) {
	// waitForStop records its pid's readiness and exits on SIGTERM.
	const waitForStop = `/bin/sh -c 'trap "exit 3" TERM; touch "$READY"; while :; do sleep 0.02; done'`
	tests := []struct {
		name string
		vars map[string]string
		// stop sends SIGTERM once the app is ready; term sends one
		// during the drain.
		stop, term bool
		wantStatus int
		wantCalls  int
		wantMin    time.Duration // the bound the drain gets, within
		wantMax    time.Duration
		want       []string
	}{
		{name: "default bound", vars: map[string]string{man8env.KeyArgs: "/bin/true"},
			wantCalls: 1, wantMin: drain.DefaultTimeout, wantMax: drain.DefaultTimeout,
			want: []string{"man8s-init: app: exited with status 0\nman8s-init: drain: fake waited\n"}},
		{name: "own bound", vars: map[string]string{man8env.KeyArgs: "/bin/false", man8env.KeyDrainTimeout: "90"},
			wantStatus: 1, wantCalls: 1, wantMin: 90 * time.Second, wantMax: 90 * time.Second},
		{name: "off", vars: map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyDrainTimeout: "0"},
			want: []string{"man8s-init: drain: off (MAN8S_DRAIN_TIMEOUT=0)"}},
		{name: "bad bound", vars: map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyDrainTimeout: "later"},
			wantStatus: 1, want: []string{`man8s-init: drain: MAN8S_DRAIN_TIMEOUT="later"`}},
		{name: "app never ran", vars: map[string]string{man8env.KeyArgs: "/nonexistent/app"}, wantStatus: 127},
		{name: "stop leaves more than the bound", vars: map[string]string{man8env.KeyArgs: waitForStop, man8env.KeyStopTimeout: "60"},
			stop: true, wantStatus: 3, wantCalls: 1, wantMin: drain.DefaultTimeout, wantMax: drain.DefaultTimeout},
		{name: "stop leaves less than the bound", vars: map[string]string{man8env.KeyArgs: waitForStop, man8env.KeyStopTimeout: "3", man8env.KeyDrainTimeout: "60"},
			stop: true, wantStatus: 3, wantCalls: 1, wantMin: 2 * time.Second, wantMax: 3 * time.Second,
			want: []string{"left of MAN8S_STOP_TIMEOUT bounds the wait"}},
		{name: "SIGTERM ends the wait", vars: map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyDrainTimeout: "600"},
			term: true, wantCalls: 1, wantMin: 600 * time.Second, wantMax: 600 * time.Second,
			want: []string{"man8s-init: drain: SIGTERM: not waiting any longer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ready := filepath.Join(root, "ready")
			tt.vars["READY"] = ready
			writeEnv(t, root, tt.vars)
			var (
				mu      sync.Mutex
				calls   []drainCall
				entered = make(chan struct{}, 1)
			)
			fake := func(ctx context.Context, o drain.Options) (drain.Result, error) {
				entered <- struct{}{}
				if tt.term {
					<-ctx.Done()
				}
				o.Log.Info("fake waited")
				mu.Lock()
				calls = append(calls, drainCall{o, ctx.Err()})
				mu.Unlock()
				return drain.Result{}, ctx.Err()
			}
			sigs := make(chan os.Signal)
			var log bytes.Buffer
			lw := &lockedWriter{w: &log}
			status := make(chan int, 1)
			go func() { status <- Run(t.Context(), Options{Root: root, Log: lw, Signals: sigs, Drain: fake}) }()

			send := func(what string) {
				select {
				case sigs <- syscall.SIGTERM:
				case <-time.After(10 * time.Second):
					t.Fatalf("no one took the SIGTERM %s", what)
				}
			}
			if tt.stop {
				deadline := time.Now().Add(10 * time.Second)
				for _, err := os.Stat(ready); err != nil; _, err = os.Stat(ready) {
					if time.Now().After(deadline) {
						t.Fatalf("the app did not start:\n%s", log.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
				send("for the stop")
			}
			if tt.term {
				select {
				case <-entered:
				case <-time.After(10 * time.Second):
					t.Fatalf("no drain:\n%s", log.String())
				}
				send("during the drain")
			}
			var got int
			select {
			case got = <-status:
			case <-time.After(20 * time.Second):
				t.Fatalf("Run did not return:\n%s", log.String())
			}
			out := log.String()
			if got != tt.wantStatus {
				t.Errorf("status %d, want %d\n%s", got, tt.wantStatus, out)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != tt.wantCalls {
				t.Fatalf("drain ran %d times, want %d\n%s", len(calls), tt.wantCalls, out)
			}
			if len(calls) == 1 {
				if b := calls[0].opts.Timeout; b < tt.wantMin || b > tt.wantMax {
					t.Errorf("drain bound %s, want %s to %s\n%s", b, tt.wantMin, tt.wantMax, out)
				}
				if (calls[0].err != nil) != tt.term {
					t.Errorf("drain ended with %v\n%s", calls[0].err, out)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
