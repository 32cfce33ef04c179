package boot

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/dhcp4"
	"github.com/man8s/mbctl/internal/guest/netinit"
	"github.com/man8s/mbctl/internal/guest/passwd"
	"github.com/man8s/mbctl/internal/guest/supervise"
)

// execPID1 ends exec-pid1 mode: it leaves a lease renewer behind (a
// man8s-init child that the image's init adopts, see KeepLease) and
// replaces man8s-init with the image's own init, run as the image's user as
// under Docker (the renewer stays root). It returns only when the exec
// fails.
func execPID1(opts Options, sup supervise.Options, user passwd.User, n *netinit.Network, step func(string, string, ...any)) int {
	if n != nil {
		// Without a lease yet (DHCP failed and MAN8S_NETWORK_CHECK is not
		// strict) the renewer goes on discovering.
		if pid, err := startRenewer(opts, n); err != nil {
			step("dhcp", "no lease renewer: %v", err)
		} else {
			step("dhcp", "lease renewer started as PID %d", pid)
		}
	}
	path, err := supervise.LookPath(sup.Argv[0], sup.Env)
	if err != nil {
		step("app", "exec %q: %v", sup.Argv[0], err)
		return supervise.ExecStatus(err)
	}
	if sup.Credential != nil {
		if err := dropPrivileges(sup.Credential); err != nil {
			step("app", "becoming %s: %v", describeUser(user, sup.Env), err)
			return 1
		}
	}
	step("app", "exec %q as PID %d, %s (%s)", sup.Argv, os.Getpid(), describeUser(user, sup.Env), usage())
	err = syscall.Exec(path, sup.Argv, sup.Env)
	step("app", "exec %q: %v", path, err)
	return supervise.ExecStatus(err)
}

// startRenewer starts "man8s-init keep-lease" with the lease in its
// environment, in a session of its own so that signals meant for the
// image's processes do not reach it.
func startRenewer(opts Options, n *netinit.Network) (int, error) {
	var text []byte
	if n.Lease != nil {
		var err error
		if text, err = n.Lease.MarshalText(); err != nil {
			return 0, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	env := []string{keyLease + "=" + string(text), "MAN8S_INIT_ENV_FILE=" + opts.EnvFile}
	p, err := os.StartProcess(self, []string{filepath.Base(self), KeepLeaseArg}, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{nil, os.Stderr, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, err
	}
	pid := p.Pid
	p.Release()
	return pid, nil
}

// KeepLease is the renewer of exec-pid1 mode: it reads the network
// settings from the environment file and the lease that man8s-init got
// from its own environment, and keeps the lease until SIGTERM or SIGINT.
func KeepLease(ctx context.Context, opts Options) int {
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	if opts.EnvFile == "" {
		opts.EnvFile = os.Getenv("MAN8S_INIT_ENV_FILE")
	}
	if opts.EnvFile == "" {
		opts.EnvFile = man8env.EnvPath
	}
	lw := &lockedWriter{w: opts.Log}
	opts.Log = lw
	step := lw.step
	env, err := envfile.ReadFile(opts.EnvFile)
	if err != nil {
		step("dhcp", "renewer: %v", err)
		return 1
	}
	settings, err := netinit.ParseSettings(env.Map())
	if err != nil {
		step("dhcp", "renewer: %v", err)
		return 1
	}
	var lease *dhcp4.Lease // none: discover
	if text := os.Getenv(keyLease); text != "" {
		if lease, err = dhcp4.ParseLease(text); err != nil {
			step("dhcp", "renewer: %v", err)
			return 1
		}
	}
	n, err := netinit.Resume(settings, netinit.Options{Root: opts.Root, Log: func(s string) *slog.Logger { return stepLogger(opts.Log, s) }}, lease)
	if err != nil {
		step("dhcp", "renewer: %v", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The image's init cannot forward: the renewer does (man8s-init
	// checked the keys before the exec).
	root := opts.Root
	if root == "" {
		root = "/"
	}
	stopForwarding, _ := startForwarder(ctx, root, true, env.Map(), opts.Log, step)
	defer stopForwarding()
	if lease != nil {
		step("dhcp", "renewer keeps %s on %s", lease.Addr, n.Link)
	} else {
		step("dhcp", "renewer looks for a lease on %s", n.Link)
	}
	n.Keep(ctx)
	return 0
}
