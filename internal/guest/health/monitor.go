package health

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/supervise"
	"github.com/man8s/mbctl/internal/guest/waitfor"
)

// Runner runs a command check inside the machine (man8s-init: as the
// app's user, with its environment, beside the supervisor's reaper).
type Runner func(ctx context.Context, argv []string, timeout time.Duration) (supervise.Result, error)

// How fast readiness is polled: the first check at once, then after
// firstPoll, growing by half after each failure up to maxPoll (targets)
// or maxCmdPoll (commands, which cost a fork and exec each).
const (
	firstPoll  = 5 * time.Millisecond
	maxPoll    = 250 * time.Millisecond
	maxCmdPoll = time.Second
)

// Monitor checks one app's readiness and health.
type Monitor struct {
	Config
	// Run runs command checks (required when a check is a command).
	Run Runner
	// Notify sends sd_notify assignments (READY=1, STATUS=...); nil: none.
	Notify func(states ...string)
	// StatePath is where the state is published (man8env.HealthPath
	// under the machine's root); empty: nowhere.
	StatePath string
	// Log receives the step lines; nil discards.
	Log *slog.Logger
	// Started is when the app started (the start period counts from it).
	Started time.Time

	mu    sync.Mutex
	state man8env.Health
	// dirMade: the state file's dir exists (publish runs under pubMu).
	pubMu   sync.Mutex
	dirMade bool
}

// ReadyError is WaitReady's error when the condition did not hold in time.
type ReadyError struct {
	Check   string
	Timeout time.Duration
	// Last is what the last check said.
	Last string
}

func (e *ReadyError) Error() string {
	return fmt.Sprintf("not ready after %s: %s never held; last check: %s", e.Timeout, e.Check, e.Last)
}

func (m *Monitor) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

func (m *Monitor) notify(states ...string) {
	if m.Notify != nil {
		m.Notify(states...)
	}
}

// State returns the current state.
func (m *Monitor) State() man8env.Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// update changes the state under the lock and publishes it.
func (m *Monitor) update(f func(*man8env.Health)) man8env.Health {
	m.mu.Lock()
	f(&m.state)
	st := m.state
	m.mu.Unlock()
	m.publish(st)
	return st
}

func (m *Monitor) publish(st man8env.Health) {
	if m.StatePath == "" {
		return
	}
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	data, err := json.Marshal(st)
	if err != nil {
		return
	}
	// tmpfs: a rename is atomic and nothing needs syncing.
	if !m.dirMade {
		if err := os.MkdirAll(filepath.Dir(m.StatePath), 0o755); err != nil {
			m.log().Warn("publishing the state", "err", err)
			return
		}
		m.dirMade = true
	}
	tmp := m.StatePath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		m.log().Warn("publishing the state", "err", err)
		return
	}
	if err := os.Rename(tmp, m.StatePath); err != nil {
		m.log().Warn("publishing the state", "err", err)
	}
}

// probe runs c once; it returns whether c held, what it said and its exit
// code (-1 when c is not a command or could not run).
func (m *Monitor) probe(ctx context.Context, c Check, timeout time.Duration) (bool, string, int) {
	if len(c.Argv) > 0 {
		if m.Run == nil {
			return false, "no command runner", -1
		}
		res, err := m.Run(ctx, c.Argv, timeout)
		out := strings.TrimSpace(res.Output)
		switch {
		case err != nil:
			return false, err.Error(), -1
		case res.TimedOut:
			return false, strings.TrimSpace(fmt.Sprintf("timed out after %s %s", timeout, out)), res.Status
		case res.Status != 0:
			if out == "" {
				out = fmt.Sprintf("exit status %d", res.Status)
			}
			return false, out, res.Status
		}
		return true, out, 0
	}
	for _, t := range c.Targets {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		err := waitfor.Check(tctx, t)
		cancel()
		if err != nil {
			return false, fmt.Sprintf("%s: %v", t, err), -1
		}
	}
	return true, "", -1
}

// WaitReady returns nil once the readiness condition holds, a *ReadyError
// when ReadyTimeout passes first, or ctx's error. It publishes the state
// and sends STATUS= lines; READY=1 is the caller's (see MarkReady).
func (m *Monitor) WaitReady(ctx context.Context) error {
	c := m.Ready
	m.update(func(h *man8env.Health) {
		h.Status, h.ReadyCheck, h.HealthCheck, h.LastExit = man8env.HealthStarting, c.Desc, m.Health.Desc, -1
	})
	if c.IsZero() {
		return nil
	}
	m.notify(fmt.Sprintf("STATUS=starting: waiting up to %s for %s", m.ReadyTimeout, c.Desc))
	m.log().Info(fmt.Sprintf("waiting up to %s for %s", m.ReadyTimeout, c.Desc))
	tctx, cancel := context.WithTimeout(ctx, m.ReadyTimeout)
	defer cancel()
	timeout := min(m.Params.Timeout, m.ReadyTimeout)
	limit := maxPoll
	if len(c.Argv) > 0 {
		limit = maxCmdPoll
	}
	interval := firstPoll
	last := "not checked yet"
	for {
		ok, out, code := m.probe(tctx, c, timeout)
		if ok {
			m.update(func(h *man8env.Health) { h.LastCheck, h.LastOutput, h.LastExit = time.Now(), out, code })
			return nil
		}
		if tctx.Err() == nil || last == "not checked yet" {
			last = out // a check cut short by the end of the wait says nothing
		}
		m.update(func(h *man8env.Health) { h.LastCheck, h.LastOutput, h.LastExit = time.Now(), last, code })
		t := time.NewTimer(interval)
		select {
		case <-tctx.Done():
			t.Stop()
			if err := ctx.Err(); err != nil {
				return err
			}
			m.update(func(h *man8env.Health) { h.Status = man8env.HealthFailed })
			return &ReadyError{Check: c.Desc, Timeout: m.ReadyTimeout, Last: last}
		case <-t.C:
		}
		interval = min(interval*3/2+time.Millisecond, limit)
	}
}

// MarkReady records that READY=1 has been sent.
func (m *Monitor) MarkReady(at time.Time) {
	m.update(func(h *man8env.Health) {
		h.Ready = at
		switch {
		case m.Health.IsZero():
			h.Status = man8env.HealthReady
		case m.Health.Desc == m.Ready.Desc:
			h.Status = man8env.HealthHealthy // the check just passed
		}
	})
}

// Watch runs the health check every Interval until ctx ends. It calls
// unhealthy once each time the app turns unhealthy (Retries failures in
// a row, not counting those within StartPeriod of the start). With no
// health check it returns at once.
func (m *Monitor) Watch(ctx context.Context, unhealthy func(man8env.Health)) {
	if m.Health.IsZero() {
		return
	}
	first := time.Duration(0)
	if m.State().Status == man8env.HealthHealthy {
		first = m.Params.Interval // the readiness check was this check
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, out, code := m.probe(ctx, m.Health, m.Params.Timeout)
		if ctx.Err() != nil {
			return
		}
		inStart := time.Since(m.Started) < m.Params.StartPeriod
		prev := m.State().Status
		st := m.update(func(h *man8env.Health) {
			h.LastCheck, h.LastOutput, h.LastExit = time.Now(), out, code
			h.Checks++
			switch {
			case ok:
				h.FailingStreak, h.Status = 0, man8env.HealthHealthy
			case inStart:
			default:
				h.FailingStreak++
				if h.FailingStreak >= m.Params.Retries {
					h.Status = man8env.HealthUnhealthy
				}
			}
		})
		if st.Status != prev {
			line := "STATUS=" + st.Status
			if st.Status == man8env.HealthUnhealthy && out != "" {
				line += ": " + firstLine(out)
			}
			m.notify(line)
			m.log().Info(fmt.Sprintf("%s -> %s", prev, st.Status), "check", m.Health.Desc, "streak", st.FailingStreak, "output", firstLine(out))
			if st.Status == man8env.HealthUnhealthy && unhealthy != nil {
				unhealthy(st)
			}
		}
		t.Reset(m.Params.Interval)
	}
}

// Restarted counts a restart of the app and goes back to starting.
func (m *Monitor) Restarted() {
	m.update(func(h *man8env.Health) {
		h.Restarts++
		h.FailingStreak = 0
		h.Status = man8env.HealthStarting
	})
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
