package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/health"
	"github.com/man8s/mbctl/internal/guest/notify"
	"github.com/man8s/mbctl/internal/guest/supervise"
)

// healthConfig reads the readiness and health keys.
func healthConfig(root string, vars map[string]string) (health.Config, error) {
	_, err := os.Stat(filepath.Join(root, appargs.ShellPath))
	return health.ParseConfig(vars, err == nil)
}

// Verdicts of the readiness and health checks on one run of the app.
const (
	verdictNone    = iota
	verdictFail    // not ready in time, or unhealthy with MAN8S_ON_UNHEALTHY=stop
	verdictRestart // unhealthy with MAN8S_ON_UNHEALTHY=restart
)

// superviseApp runs the app under the supervisor, checks its readiness
// (READY=1 to nspawn once it holds) and then its health, and restarts or
// stops it when MAN8S_ON_UNHEALTHY says so. It returns the status to exit
// with, and errUnhealthy when the checks ended the app.
func superviseApp(ctx context.Context, opts Options, sup supervise.Options, hc health.Config, step func(string, string, ...any)) (int, error) {
	n := notify.FromEnv()
	defer n.Close()
	var warned atomic.Bool
	send := func(states ...string) {
		named, err := n.Send(states...)
		switch {
		case err != nil:
			if !warned.Swap(true) {
				step("notify", "%v", err)
			}
		case !named && !warned.Swap(true):
			step("notify", "warning: the kernel refused to name PID 1 in the credentials (no CAP_SYS_ADMIN over the machine's PID namespace); systemd-nspawn ignores messages from PID %d", os.Getpid())
		}
	}

	// One signal source for every run of the app, so that nothing is lost
	// between a stop and the restart; a stop request is remembered.
	if sup.Signals == nil {
		own := make(chan os.Signal, 16)
		signal.Notify(own, append([]os.Signal{syscall.SIGTERM}, supervise.ForwardedSignals()...)...)
		defer signal.Stop(own)
		sup.Signals = own
	}
	var stopAsked atomic.Bool
	sup.OnTerm = func() { stopAsked.Store(true) }

	statePath := filepath.Join(opts.Root, man8env.HealthPath)
	if opts.Root == "/" && os.Getpid() > 2 {
		statePath = "" // not in a machine: leave the host's /run alone
	}
	mon := &health.Monitor{
		Config:    hc,
		Notify:    send,
		StatePath: statePath,
		Log:       stepLogger(opts.Log, "health"),
		Run: func(ctx context.Context, argv []string, timeout time.Duration) (supervise.Result, error) {
			return supervise.Spawn(ctx, argv, supervise.SpawnOptions{Env: sup.Env, Credential: sup.Credential, Timeout: timeout})
		},
	}
	readySent := false
	for {
		appCtx, stopApp := context.WithCancel(ctx)
		var verdict atomic.Int32
		var wg sync.WaitGroup
		sup.OnStart = func(int) {
			mon.Started = time.Now()
			wg.Go(func() {
				if err := mon.WaitReady(appCtx); err != nil {
					var re *health.ReadyError
					if errors.As(err, &re) {
						step("ready", "%v; stopping the app (%s)", err, man8env.KeyReadyTimeout)
						send("STATUS=failed: " + err.Error())
						verdict.Store(verdictFail)
						stopApp()
					}
					return
				}
				if !readySent {
					took := time.Since(mon.Started)
					what := "the app has started"
					if !hc.Ready.IsZero() {
						what = hc.Ready.Desc
					}
					send("READY=1", fmt.Sprintf("STATUS=ready after %s: %s", took.Round(time.Millisecond), what))
					readySent = true
					step("ready", "ready after %s (%s); READY=1 sent", took.Round(time.Millisecond), what)
				}
				mon.MarkReady(time.Now())
				mon.Watch(appCtx, func(h man8env.Health) {
					switch hc.OnUnhealthy {
					case man8env.OnUnhealthyRestart:
						step("health", "unhealthy after %d failed checks: restarting the app (%s=restart)", h.FailingStreak, man8env.KeyOnUnhealthy)
						verdict.Store(verdictRestart)
						stopApp()
					case man8env.OnUnhealthyStop:
						step("health", "unhealthy after %d failed checks: stopping the machine (%s=stop)", h.FailingStreak, man8env.KeyOnUnhealthy)
						verdict.Store(verdictFail)
						stopApp()
					default:
						step("health", "unhealthy after %d failed checks (last: %s)", h.FailingStreak, strings.ReplaceAll(h.LastOutput, "\n", "; "))
					}
				})
			})
		}
		status, err := supervise.Run(appCtx, sup)
		stopApp()
		wg.Wait()
		switch v := verdict.Load(); {
		case v == verdictRestart && ctx.Err() == nil && !stopAsked.Load():
			step("app", "exited with status %d; starting it again", status)
			mon.Restarted()
			continue
		case v != verdictNone && err == nil:
			step("app", "exited with status %d", status)
			if status == 0 {
				status = 1 // the machine failed: let Restart=on-failure act
			}
			return status, errUnhealthy
		}
		return status, err
	}
}

// errUnhealthy marks a run ended by the readiness or health checks.
var errUnhealthy = errors.New("ended by its readiness or health check")
