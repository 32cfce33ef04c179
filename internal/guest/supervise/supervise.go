// Package supervise is the supervise-mode core of man8s-init: it starts the
// application as a child, reaps every process that ends up as our child, forwards
// signals, and turns the stop request of nspawn's stub init (SIGTERM, then SIGHUP)
// into the image's own stop signal followed by SIGKILL after a grace period.
//
// Like tini and catatonit, it reaps with wait4(-1, WNOHANG) on every SIGCHLD until
// nothing is left, recording the application's status inside that loop; it never
// waits for a specific child. Run must therefore be the only code in the process that
// waits for children, and only one Run may be active at a time.
//
// When the application exits, Run returns its status at once and sends nothing to
// processes the application left behind (as tini does): in supervise mode the
// supervisor's exit ends the stub init and with it the container's PID namespace,
// whose teardown SIGKILLs everything left.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/signals"
)

// Defaults for Options.
const (
	DefaultStopSignal  = syscall.SIGTERM
	DefaultStopTimeout = 10 * time.Second
	// DefaultPath is the PATH used to look up Argv[0] when Env has none.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Exit statuses returned when the application cannot be started, as in POSIX shells.
const (
	StatusCannotExecute = 126
	StatusNotFound      = 127
)

// ForwardedSignals returns the signals passed on to the application's process
// unchanged. SIGHUP is not forwarded once a stop has begun.
func ForwardedSignals() []os.Signal {
	return []os.Signal{
		syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1,
		syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT,
	}
}

// Options configures Run.
type Options struct {
	// Argv is the application's command; Argv[0] without a slash is looked up in the
	// PATH of Env.
	Argv []string
	// Env is the application's environment.
	Env []string
	// Credential drops privileges (uid, gid, supplementary groups); nil keeps ours.
	Credential *syscall.Credential
	// StopSignal is sent to the application once on the first SIGTERM
	// (MAN8S_STOP_SIGNAL); zero means DefaultStopSignal.
	StopSignal syscall.Signal
	// StopTimeout is how long the application has after StopSignal before its
	// process group is SIGKILLed (MAN8S_STOP_TIMEOUT); zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// Log receives one line per notable event; nil discards.
	Log *slog.Logger
	// OnStop, if set, is called once when a stop begins (the first SIGTERM,
	// or ctx ending), from Run's goroutine, with the time at which the
	// application's process group will be SIGKILLed. man8s-init fits what
	// it does after the application's exit into the rest of that time.
	OnStop func(killAt time.Time)
	// OnStart, if set, is called once with the application's PID right
	// after it started, from Run's goroutine (man8s-init starts its
	// readiness checks there).
	OnStart func(pid int)
	// OnTerm, if set, is called for every SIGTERM taken from Signals,
	// also one that arrives while a stop is in progress.
	OnTerm func()
	// Signals is the source of SIGTERM and of the signals to forward. Nil means the
	// process's own signals (signal.Notify). SIGCHLD is always taken from the process
	// and ignored on this channel; signals that are neither SIGTERM nor forwarded are
	// ignored too.
	Signals <-chan os.Signal
}

// Run starts the application and supervises it until it exits. It returns the status
// to exit with: the application's exit code, 128+signal if a signal killed it,
// StatusCannotExecute when exec fails for lack of permission or a bad executable, and
// StatusNotFound when the program does not exist (both with a non-nil error).
// Cancelling ctx requests a stop, as the first SIGTERM does.
func Run(ctx context.Context, opts Options) (int, error) {
	if len(opts.Argv) == 0 || opts.Argv[0] == "" {
		return StatusNotFound, errors.New("supervise: empty command")
	}
	if opts.StopSignal == 0 {
		opts.StopSignal = DefaultStopSignal
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 1, fmt.Errorf("supervise: become child subreaper: %w", err)
		}
	}

	// Subscribe before the child exists so that no SIGCHLD or stop request is lost.
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	defer signal.Stop(chld)
	sigs := opts.Signals
	if sigs == nil {
		own := make(chan os.Signal, 16)
		signal.Notify(own, append([]os.Signal{syscall.SIGTERM}, ForwardedSignals()...)...)
		defer signal.Stop(own)
		sigs = own
	}

	runActive(true) // from here on this Run reaps Spawn's children too
	defer runActive(false)
	pid, status, err := start(opts)
	if err != nil {
		return status, err
	}
	log.Info("application started", "pid", pid, "argv", opts.Argv)
	if opts.OnStart != nil {
		opts.OnStart(pid)
	}

	var (
		stopping  bool
		killTimer *time.Timer
		kill      <-chan time.Time
		done      = ctx.Done()
		// A SIGHUP is held back for hupGrace: nspawn's stub init sends
		// SIGTERM and then SIGHUP, and Go hands signals that are pending
		// together over in signal-number order, SIGHUP first. A SIGTERM
		// within the grace period turns the held SIGHUP into part of
		// the stop request, which is not forwarded.
		hupHeld  bool
		hupTimer *time.Timer
		hup      <-chan time.Time
	)
	defer func() {
		if killTimer != nil {
			killTimer.Stop()
		}
		if hupTimer != nil {
			hupTimer.Stop()
		}
	}()
	stop := func(reason string) {
		if stopping {
			log.Info("stop already in progress; ignored", "reason", reason)
			return
		}
		stopping = true
		log.Info("stopping application", "reason", reason, "signal", signals.Name(opts.StopSignal), "timeout", opts.StopTimeout)
		signalApp(log, pid, opts.StopSignal)
		killTimer = time.NewTimer(opts.StopTimeout)
		kill = killTimer.C
		if opts.OnStop != nil {
			opts.OnStop(time.Now().Add(opts.StopTimeout))
		}
	}
	for {
		select {
		case <-chld:
			if st, exited := reap(log, pid); exited {
				log.Info("application exited", "status", st)
				return st, nil
			}
		case <-done:
			done = nil
			stop("context cancelled")
		case <-hup:
			hup, hupHeld = nil, false
			if !stopping {
				signalApp(log, pid, syscall.SIGHUP)
			}
		case <-kill:
			kill = nil
			log.Warn("stop timeout expired; killing the application's process group", "timeout", opts.StopTimeout)
			// The group, plus the application itself in case it left the group.
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				log.Warn("kill process group", "pgid", pid, "err", err)
			}
			signalApp(log, pid, syscall.SIGKILL)
		case s, open := <-sigs:
			if !open {
				sigs = nil // a closed source delivers nothing more
				continue
			}
			sig, ok := s.(syscall.Signal)
			switch {
			case !ok || sig == syscall.SIGCHLD:
			case sig == syscall.SIGTERM:
				if opts.OnTerm != nil {
					opts.OnTerm()
				}
				if hupHeld {
					log.Info("SIGHUP next to the stop request not forwarded")
					hup, hupHeld = nil, false
				}
				stop("SIGTERM")
			case sig == syscall.SIGHUP && stopping:
				log.Info("SIGHUP after stop request not forwarded")
			case sig == syscall.SIGHUP:
				if !hupHeld {
					hupHeld = true
					hupTimer = time.NewTimer(hupGrace)
					hup = hupTimer.C
				}
			case isForwarded(sig):
				signalApp(log, pid, sig)
			default:
				log.Info("signal ignored", "signal", signals.Name(sig))
			}
		}
	}
}

// start forks and execs the application in its own process group. On failure it
// returns the exit status a shell would give.
// hupGrace is how long a SIGHUP waits for a SIGTERM that would make it part
// of a stop request (see Run).
const hupGrace = 50 * time.Millisecond

func start(opts Options) (int, int, error) {
	path, err := LookPath(opts.Argv[0], opts.Env)
	if err != nil {
		return 0, ExecStatus(err), fmt.Errorf("supervise: start %q: %w", opts.Argv[0], err)
	}
	// Go's fork gives the child the signal mask the process started with and resets
	// handled signals to their default; Setpgid puts the application in its own
	// process group, whose id is its pid.
	attr := &syscall.ProcAttr{
		Env:   opts.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: opts.Credential,
		},
	}
	// On a terminal the application's group must be the terminal's
	// foreground group, or Ctrl-C never reaches it and it cannot read.
	tty := terminalMode()
	switch tty {
	case ttyOurs:
		attr.Sys.Foreground, attr.Sys.Ctty = true, 0
	case ttyFree:
		// Under nspawn's stub init man8s-init leads a session without a
		// controlling terminal: the application gets a session of its
		// own with the terminal as its controlling one.
		attr.Sys.Setpgid, attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = false, true, true, 0
	}
	pid, err := syscall.ForkExec(path, opts.Argv, attr)
	if err != nil && tty != ttyNone && !errors.Is(err, syscall.ENOENT) {
		// The terminal could not be taken: run without it.
		attr.Sys.Setpgid, attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Foreground = true, false, false, false
		pid, err = syscall.ForkExec(path, opts.Argv, attr)
	}
	if err != nil {
		return 0, ExecStatus(err), fmt.Errorf("supervise: exec %q: %w", path, err)
	}
	return pid, 0, nil
}

// Terminal modes of standard input (see terminalMode).
const (
	ttyNone = iota // not a terminal
	ttyOurs        // our session's controlling terminal
	ttyFree        // a terminal that is not our controlling terminal
)

// terminalMode says how standard input relates to a terminal.
func terminalMode() int {
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err != nil {
		return ttyNone
	}
	sid, err := unix.IoctlGetInt(0, unix.TIOCGSID)
	if err != nil {
		return ttyFree // ENOTTY: not anyone's controlling terminal we can see
	}
	if own, err := unix.Getsid(0); err == nil && own == sid {
		return ttyOurs
	}
	return ttyFree
}

// ExecStatus maps an exec failure to 127 (not found) or 126 (cannot execute).
func ExecStatus(err error) int {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return StatusNotFound
	}
	return StatusCannotExecute
}

// LookPath resolves file like execvp does, using the PATH of env rather than ours.
// A name with a slash is returned as is and exec reports errors.
func LookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := DefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	var denied error
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		candidate := filepath.Join(d, file)
		fi, err := os.Stat(candidate)
		if err != nil {
			continue
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			if !filepath.IsAbs(candidate) {
				candidate = "./" + candidate
			}
			return candidate, nil
		}
		if denied == nil {
			denied = fmt.Errorf("%s: %w", candidate, syscall.EACCES)
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("not found in PATH %q: %w", path, syscall.ENOENT)
}

// reap collects every child that has exited. It reports the application's status
// once the application is among them.
func reap(log *slog.Logger, app int) (status int, exited bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: nothing left; 0: nothing exited yet
			return status, exited
		}
		if pid != app {
			if !deliver(pid, ws) {
				log.Debug("reaped orphan", "pid", pid, "status", waitStatus(ws))
			}
			continue
		}
		status, exited = waitStatus(ws), true
	}
}

// waitStatus turns a wait status into a shell-style exit status.
func waitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// signalApp sends sig to the application's process; a process that is already gone
// is not an error.
func signalApp(log *slog.Logger, pid int, sig syscall.Signal) {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.Warn("signal application", "pid", pid, "signal", signals.Name(sig), "err", err)
		return
	}
	log.Debug("signal sent to application", "pid", pid, "signal", signals.Name(sig))
}

// isForwarded reports whether sig is one of ForwardedSignals.
func isForwarded(sig syscall.Signal) bool {
	return slices.Contains(ForwardedSignals(), os.Signal(sig))
}
