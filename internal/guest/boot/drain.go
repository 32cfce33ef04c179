package boot

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/guest/drain"
	"github.com/man8s/mbctl/internal/guest/supervise"
)

// drainTimeout reads MAN8S_DRAIN_TIMEOUT: seconds or a duration, 0 to
// turn the drain off; unset means drain.DefaultTimeout.
func drainTimeout(vars map[string]string) (time.Duration, error) {
	if d, err := time.ParseDuration(strings.TrimSpace(vars[man8env.KeyDrainTimeout])); err == nil && d == 0 {
		return 0, nil // "0", "0s"
	}
	return envfile.Duration(vars, man8env.KeyDrainTimeout, drain.DefaultTimeout)
}

// drainSockets is supervise mode's last step, after the app has exited:
// the TCP data still queued in the machine's sockets is lost when
// man8s-init exits and the machine's network namespace goes, so it waits
// for that data to be delivered (see package drain), at most timeout
// (MAN8S_DRAIN_TIMEOUT). After a stop it waits no longer than the stop's
// SIGKILL time, killAt: MAN8S_STOP_TIMEOUT bounds the whole stop, drain
// included, so that a stop never takes longer than the user allowed. A
// further SIGTERM or SIGINT ends the wait; other signals are ignored (Go's
// default for them would end man8s-init).
func drainSockets(ctx context.Context, opts Options, timeout time.Duration, killAt time.Time, step func(string, string, ...any)) {
	if timeout <= 0 {
		step("drain", "off (%s=0)", man8env.KeyDrainTimeout)
		return
	}
	if !killAt.IsZero() {
		left := time.Until(killAt)
		if left <= 0 {
			step("drain", "skipped: the stop used all of %s", man8env.KeyStopTimeout)
			return
		}
		if left < timeout {
			step("drain", "%s left of %s bounds the wait", left.Round(10*time.Millisecond), man8env.KeyStopTimeout)
			timeout = left
		}
	}
	wait := opts.Drain
	if wait == nil {
		if pid := os.Getpid(); pid > 2 {
			step("drain", "skipped: man8s-init is PID %d, not a machine's PID 1 or 2", pid)
			return
		}
		wait = drain.Wait
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := opts.Signals
	if sigs == nil {
		own := make(chan os.Signal, 4)
		signal.Notify(own, append([]os.Signal{syscall.SIGTERM}, supervise.ForwardedSignals()...)...)
		defer signal.Stop(own)
		sigs = own
	}
	go func(sigs <-chan os.Signal) {
		for {
			select {
			case s, open := <-sigs:
				if !open {
					sigs = nil // a closed source delivers nothing more
					continue
				}
				if sig, ok := s.(syscall.Signal); ok && (sig == syscall.SIGTERM || sig == syscall.SIGINT) {
					step("drain", "%s: not waiting any longer", signals.Name(sig))
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}(sigs)
	if _, err := wait(ctx, drain.Options{Timeout: timeout, Log: stepLogger(opts.Log, "drain")}); err != nil && ctx.Err() == nil {
		step("drain", "%v", err)
	}
}
