// Package boot is man8s-init: the steps that turn a machine's environment
// file into a running, supervised application. cmd/man8s-init only calls Run.
//
// Each step logs one line "man8s-init: <step>: <result>" to stderr (the
// machine's console, and the journal when systemd runs the machine).
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/protect"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/guest/drain"
	"github.com/man8s/mbctl/internal/guest/netinit"
	"github.com/man8s/mbctl/internal/guest/notify"
	"github.com/man8s/mbctl/internal/guest/passwd"
	"github.com/man8s/mbctl/internal/guest/supervise"
	"github.com/man8s/mbctl/internal/guest/waitfor"
)

// keyLease passes the lease to the renewer of exec-pid1 mode.
const keyLease = "MAN8S_INIT_LEASE"

// KeepLeaseArg is the first argument that makes man8s-init the lease
// renewer of exec-pid1 mode (see KeepLease).
const KeepLeaseArg = "keep-lease"

// Options locate what Run works on; production uses the defaults.
type Options struct {
	// Root is the machine's root as man8s-init sees it (default "/").
	Root string
	// EnvFile is the application's environment file (default
	// Root/man8env.env).
	EnvFile string
	// Log receives the step lines (default os.Stderr).
	Log io.Writer
	// Signals, if set, replaces the process's own signals (tests).
	Signals <-chan os.Signal
	// Network configures the machine's network (default netinit.Setup, but
	// only when man8s-init is PID 1 or 2, that is inside a machine: run
	// anywhere else, such as in a test, it never touches the network).
	Network func(context.Context, netinit.Settings, netinit.Options) (*netinit.Network, error)
	// Drain waits, after the app has exited, for the data queued in the
	// machine's TCP sockets (default drain.Wait, but, as for Network, only
	// when man8s-init is PID 1 or 2).
	Drain func(context.Context, drain.Options) (drain.Result, error)
}

// Run performs man8s-init's steps and supervises the application. It
// returns the exit status for the process.
func Run(ctx context.Context, opts Options) int {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.EnvFile == "" {
		opts.EnvFile = filepath.Join(opts.Root, man8env.EnvPath)
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	lw := &lockedWriter{w: opts.Log}
	opts.Log = lw
	step := lw.step

	env, err := envfile.ReadFile(opts.EnvFile)
	if err != nil {
		step("env", "%v", err)
		return 1
	}
	vars := env.Map()
	step("env", "loaded %d variables from %s", len(vars), opts.EnvFile)
	for _, p := range env.Problems() {
		step("env", "warning: %s %s", opts.EnvFile, p)
	}
	secretEnv, ok := appSecrets(opts, vars, step)
	if !ok {
		return 1
	}

	st, err := protect.Restore(opts.Root)
	if err != nil {
		step("restore", "%v", err)
		return 1
	}
	step("restore", "%d files, %d dirs, %d symlinks restored into /run and /tmp", st.Files, st.Dirs, st.Symlinks)

	// In supervise mode (the default) man8s-init is PID 2 and supervises
	// the app, renewing the DHCP lease beside it; in exec-pid1 mode it is
	// PID 1, sets up, leaves a lease renewer behind and execs the image's
	// own init.
	mode := man8env.InitMode(strings.TrimSpace(vars[man8env.KeyInitMode]))
	switch mode {
	case "":
		mode = man8env.InitSupervise
	case man8env.InitSupervise, man8env.InitExecPID1:
	default:
		step("env", "%s=%q: want %s or %s", man8env.KeyInitMode, mode, man8env.InitSupervise, man8env.InitExecPID1)
		return 1
	}

	network, ok := setupNetwork(ctx, opts, vars, step)
	if !ok {
		return 1
	}
	if _, _, err := forwardOptions(opts.Root, vars); err != nil {
		step("forward", "%v", err)
		return 1
	}

	if spec := strings.TrimSpace(vars[man8env.KeyWaitFor]); spec != "" {
		if err := waitDeps(ctx, spec, vars, opts.Log, step); err != nil {
			step("wait", "%v", err)
			return 1
		}
	}

	sup, user, err := appOptions(opts.Root, vars)
	if err != nil {
		step("app", "%v", err)
		return 1
	}
	sup.Env = appEnviron(os.Environ(), env.Environ(), user, mode)
	sup.Env = envfile.Merge(sup.Env, secretEnv) // a secret wins over man8env.env
	hc, err := healthConfig(opts.Root, vars)
	if err != nil {
		step("ready", "%v", err)
		return 1
	}
	sup.Signals = opts.Signals
	sup.Log = stepLogger(opts.Log, "app")
	if sup.Credential != nil && os.Getpid() <= 2 {
		chownStdio(sup.Credential.Uid, step)
	}
	if mode == man8env.InitExecPID1 {
		return execPID1(opts, sup, user, network, step)
	}
	drainFor, err := drainTimeout(vars)
	if err != nil {
		step("drain", "%v", err)
		return 1
	}
	var killAt time.Time // set by a stop: its SIGKILL time, the drain's latest end
	sup.OnStop = func(t time.Time) { killAt = t }
	if network != nil {
		keepCtx, stopKeeping := context.WithCancel(ctx)
		defer stopKeeping()
		go network.Keep(keepCtx)
		// The forwarder acts on the app's listening sockets only: started
		// before the app, it decides once the app listens.
		stopForwarding, ok := startForwarder(ctx, opts.Root, false, vars, opts.Log, step)
		if !ok {
			return 1
		}
		defer stopForwarding()
	}
	// The app's own sd_notify is not relayed (README "Readiness"): its
	// readiness is man8s-init's condition, so it does not get the socket.
	sup.Env = deleteEnv(sup.Env, notify.EnvSocket)
	step("app", "starting %q as %s (%s)", sup.Argv, describeUser(user, sup.Env), usage())
	status, err := superviseApp(ctx, opts, sup, hc, step)
	switch {
	case errors.Is(err, errUnhealthy):
		drainSockets(ctx, opts, drainFor, killAt, step)
	case err != nil:
		step("app", "%v", err)
	default:
		step("app", "exited with status %d", status)
		drainSockets(ctx, opts, drainFor, killAt, step)
	}
	return status
}

// setupNetwork runs the network steps (3-5). It returns the network whose
// lease is to be kept (nil when there is none) and false when the
// machine must not start.
func setupNetwork(ctx context.Context, opts Options, vars map[string]string, step func(string, string, ...any)) (*netinit.Network, bool) {
	settings, err := netinit.ParseSettings(vars)
	if err != nil {
		step("network", "%v", err)
		return nil, false
	}
	if !man8env.HasOwnNetwork(settings.Template) {
		// No network: no lease to keep, no forwarder, no checks.
		step("network", "skipped: template %s shares the host's network (%s); no addresses, routes or checks", settings.Template, man8env.KeyTemplate)
		return nil, true
	}
	setup := opts.Network
	if setup == nil {
		if pid := os.Getpid(); pid > 2 {
			step("network", "skipped: man8s-init is PID %d, not a machine's PID 1 or 2", pid)
			return nil, true
		}
		setup = netinit.Setup
	}
	n, err := setup(ctx, settings, netinit.Options{Root: opts.Root, Log: func(s string) *slog.Logger { return stepLogger(opts.Log, s) }})
	switch {
	case errors.Is(err, netinit.ErrNoLink) && settings.Check != netinit.CheckStrict:
		step("network", "skipped: %v", err)
		return nil, true
	case err != nil && settings.Check == netinit.CheckStrict:
		step("network", "failed (%s=strict): %v", man8env.KeyCheck, err)
		return nil, false
	case err != nil:
		step("network", "going on despite failures (%s=%s): %v", man8env.KeyCheck, settings.Check, oneLine(err))
	}
	return n, true
}

// waitDeps waits, within MAN8S_WAIT_TIMEOUT, for the MAN8S_WAIT_FOR
// targets in spec.
func waitDeps(ctx context.Context, spec string, vars map[string]string, log io.Writer, step func(string, string, ...any)) error {
	targets, err := waitfor.Parse(spec)
	if err != nil {
		return err
	}
	timeout, err := envfile.Duration(vars, man8env.KeyWaitTimeout, waitfor.DefaultTimeout)
	if err != nil {
		return err
	}
	start := time.Now()
	step("wait", "waiting up to %s for %d dependencies: %s", timeout, len(targets), targetList(targets))
	if err := waitfor.Wait(ctx, targets, waitfor.Options{Timeout: timeout, Log: stepLogger(log, "wait")}); err != nil {
		return err
	}
	step("wait", "%d dependencies met after %.1fs", len(targets), time.Since(start).Seconds())
	return nil
}

// targetList names the targets (credentials redacted).
func targetList(ts []waitfor.Target) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return strings.Join(names, " ")
}

// oneLine joins the lines of a joined error.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// usage reports man8s-init's own CPU time and peak memory so far.
func usage() string {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return "usage unknown"
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return fmt.Sprintf("init cpu %.1fms, max rss %d KiB", float64(cpu)/float64(time.Millisecond), ru.Maxrss)
}

// appOptions builds the supervisor's options from the environment file
// (all but Env, Signals and Log) and resolves the image's user. Without a
// user the app runs as root with root's groups, as under Docker; outside a
// machine, where man8s-init may not be root (tests), it then keeps
// man8s-init's own credentials, which it could not change.
func appOptions(root string, vars map[string]string) (supervise.Options, passwd.User, error) {
	var o supervise.Options
	_, err := os.Stat(filepath.Join(root, appargs.ShellPath))
	if o.Argv, err = appargs.Command(vars[man8env.KeyArgs], err == nil); err != nil {
		return o, passwd.User{}, fmt.Errorf("%s: %w", man8env.KeyArgs, err)
	}
	if s := vars[man8env.KeyStopSignal]; s != "" {
		sig, err := signals.Parse(s)
		if err != nil {
			return o, passwd.User{}, fmt.Errorf("%s: %w", man8env.KeyStopSignal, err)
		}
		o.StopSignal = sig
	}
	if o.StopTimeout, err = envfile.Duration(vars, man8env.KeyStopTimeout, 0); err != nil {
		return o, passwd.User{}, err // 0: the supervisor's default
	}
	spec := vars[man8env.KeyUser]
	u, err := passwd.Lookup(root, spec)
	if err != nil {
		return o, passwd.User{}, fmt.Errorf("%s=%s in man8env.env (the image's USER): %w", man8env.KeyUser, spec, err)
	}
	if spec != "" || os.Geteuid() == 0 {
		o.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	return o, u, nil
}
