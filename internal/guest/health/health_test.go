package health

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/supervise"
)

func TestParseConfig(t *testing.T) {
	for _, tt := range []struct {
		name       string
		vars       map[string]string
		shell      bool
		wantReady  string
		wantHealth string
		wantArgv   []string
		wantErr    string
	}{
		{name: "nothing: ready when started", vars: map[string]string{}, shell: true},
		{name: "the image's HEALTHCHECK for both", shell: true,
			vars:      map[string]string{man8env.KeyHealthcheck: "CMD-SHELL curl -f http://localhost/ || exit 1"},
			wantReady: "HEALTHCHECK CMD-SHELL curl -f http://localhost/ || exit 1", wantHealth: "HEALTHCHECK CMD-SHELL curl -f http://localhost/ || exit 1",
			wantArgv: []string{"/bin/sh", "-c", "curl -f http://localhost/ || exit 1"}},
		{name: "CMD without a shell", vars: map[string]string{man8env.KeyHealthcheck: "CMD /healthcheck.sh --quiet"},
			wantReady: "HEALTHCHECK CMD /healthcheck.sh --quiet", wantHealth: "HEALTHCHECK CMD /healthcheck.sh --quiet",
			wantArgv: []string{"/healthcheck.sh", "--quiet"}},
		{name: "MAN8S_READY wins for readiness", shell: true,
			vars:      map[string]string{man8env.KeyHealthcheck: "CMD /check", man8env.KeyReady: "tcp://127.0.0.1:5432"},
			wantReady: "tcp://127.0.0.1:5432", wantHealth: "HEALTHCHECK CMD /check"},
		{name: "started and MAN8S_HEALTH none", vars: map[string]string{man8env.KeyHealthcheck: "CMD /check", man8env.KeyReady: "started", man8env.KeyHealth: "none"}},
		{name: "cmd: ready", shell: true, vars: map[string]string{man8env.KeyReady: "cmd:pg_isready -q"}, wantReady: "cmd:pg_isready -q",
			wantArgv: []string{"/bin/sh", "-c", "pg_isready -q"}},
		{name: "HEALTHCHECK NONE", vars: map[string]string{man8env.KeyHealthcheck: "NONE"}},
		{name: "CMD-SHELL needs a shell", vars: map[string]string{man8env.KeyHealthcheck: "CMD-SHELL true"}, wantErr: "needs /bin/sh"},
		{name: "bad target", vars: map[string]string{man8env.KeyReady: "tcp://nohost"}, wantErr: "MAN8S_READY"},
		{name: "bad retries", vars: map[string]string{man8env.KeyHealthcheckRetries: "0"}, wantErr: "MAN8S_HEALTHCHECK_RETRIES=0"},
		{name: "bad action", vars: map[string]string{man8env.KeyOnUnhealthy: "reboot"}, wantErr: "want none, restart or stop"},
		{name: "bad timeout", vars: map[string]string{man8env.KeyReadyTimeout: "soon"}, wantErr: "MAN8S_READY_TIMEOUT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.vars, tt.shell)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Ready.Desc != tt.wantReady || c.Health.Desc != tt.wantHealth {
				t.Errorf("ready %q health %q, want %q %q", c.Ready.Desc, c.Health.Desc, tt.wantReady, tt.wantHealth)
			}
			argv := c.Ready.Argv
			if tt.wantArgv != nil && strings.Join(argv, "\x00") != strings.Join(tt.wantArgv, "\x00") {
				t.Errorf("argv %q, want %q", argv, tt.wantArgv)
			}
			if c.Params.Interval != DefaultInterval || c.Params.Retries != DefaultRetries || c.ReadyTimeout != DefaultReadyTimeout || c.OnUnhealthy != man8env.OnUnhealthyNone {
				t.Errorf("defaults: %+v", c)
			}
		})
	}
}

// fakeRun answers command checks from a queue of statuses (the last repeats).
type fakeRun struct {
	mu       sync.Mutex
	statuses []int
	calls    int
}

func (f *fakeRun) run(_ context.Context, _ []string, _ time.Duration) (supervise.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.statuses[min(f.calls, len(f.statuses)-1)]
	f.calls++
	return supervise.Result{Status: st, Output: "said " + string(rune('0'+st))}, nil
}

func TestWaitReadyPolls(t *testing.T) {
	f := &fakeRun{statuses: []int{1, 1, 1, 0}}
	var sent []string
	state := filepath.Join(t.TempDir(), "run/man8s/health.json")
	m := &Monitor{Config: Config{Ready: Check{Argv: []string{"check"}, Desc: "cmd:check"}, ReadyTimeout: 10 * time.Second, Params: Params{Timeout: time.Second}},
		Run: f.run, Notify: func(s ...string) { sent = append(sent, s...) }, StatePath: state}
	if err := m.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f.calls != 4 {
		t.Errorf("%d checks, want 4", f.calls)
	}
	if len(sent) != 1 || !strings.HasPrefix(sent[0], "STATUS=starting: waiting up to 10s for cmd:check") {
		t.Errorf("sent %q", sent)
	}
	m.MarkReady(time.Now())
	var h man8env.Health
	data, err := os.ReadFile(state)
	if err != nil || json.Unmarshal(data, &h) != nil {
		t.Fatalf("state file: %v %s", err, data)
	}
	if h.Status != man8env.HealthReady || h.Ready.IsZero() || h.ReadyCheck != "cmd:check" {
		t.Errorf("state %+v", h)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	f := &fakeRun{statuses: []int{3}}
	m := &Monitor{Config: Config{Ready: Check{Argv: []string{"check"}, Desc: "cmd:check"}, ReadyTimeout: 300 * time.Millisecond, Params: Params{Timeout: time.Second}}, Run: f.run}
	err := m.WaitReady(t.Context())
	var re *ReadyError
	if !errors.As(err, &re) || re.Last != "said 3" || !strings.Contains(err.Error(), "not ready after 300ms: cmd:check never held; last check: said 3") {
		t.Fatalf("err %v", err)
	}
	if m.State().Status != man8env.HealthFailed {
		t.Errorf("state %+v", m.State())
	}
}

func TestWaitReadyTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := ParseSpec(man8env.KeyReady, "tcp://"+l.Addr().String(), false)
	if err != nil {
		t.Fatal(err)
	}
	m := &Monitor{Config: Config{Ready: c, ReadyTimeout: 5 * time.Second, Params: Params{Timeout: time.Second}}}
	start := time.Now()
	if err := m.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("an open port took %s to count as ready", took)
	}
}

func TestWatchTransitions(t *testing.T) {
	// healthy, then 2 failures (Retries 2) make it unhealthy, then healthy again.
	f := &fakeRun{statuses: []int{0, 1, 1, 0}}
	var mu sync.Mutex
	var sent []string
	m := &Monitor{Config: Config{Health: Check{Argv: []string{"check"}, Desc: "cmd:check"},
		Params: Params{Interval: 10 * time.Millisecond, Timeout: time.Second, Retries: 2}},
		Run: f.run, Notify: func(s ...string) { mu.Lock(); sent = append(sent, s...); mu.Unlock() }, Started: time.Now()}
	m.WaitReady(t.Context())
	m.MarkReady(time.Now())
	ctx, cancel := context.WithCancel(t.Context())
	unhealthy := 0
	go func() {
		for {
			mu.Lock()
			n := len(sent)
			mu.Unlock()
			if n >= 3 {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	m.Watch(ctx, func(h man8env.Health) {
		unhealthy++
		if h.FailingStreak != 2 {
			t.Errorf("unhealthy with streak %d", h.FailingStreak)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	want := []string{"STATUS=healthy", "STATUS=unhealthy: said 1", "STATUS=healthy"}
	if strings.Join(sent, "|") != strings.Join(want, "|") || unhealthy != 1 {
		t.Errorf("sent %q (unhealthy called %d times), want %q", sent, unhealthy, want)
	}
}

func TestStartPeriodDoesNotCount(t *testing.T) {
	f := &fakeRun{statuses: []int{1}}
	m := &Monitor{Config: Config{Health: Check{Argv: []string{"check"}, Desc: "cmd:check"},
		Params: Params{Interval: 5 * time.Millisecond, Timeout: time.Second, Retries: 1, StartPeriod: time.Hour}},
		Run: f.run, Started: time.Now()}
	m.MarkReady(time.Now())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	m.Watch(ctx, func(man8env.Health) { t.Error("unhealthy within the start period") })
	if st := m.State(); st.FailingStreak != 0 || f.calls < 2 {
		t.Errorf("state %+v after %d checks", st, f.calls)
	}
}
