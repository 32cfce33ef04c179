// Package initd is man8s-init: the steps that turn a machine's environment
// file into a running, supervised application. cmd/man8s-init only calls Run.
//
// Each step logs one line "man8s-init: <step>: <result>" to stderr (the
// machine's console, and the journal when systemd runs the machine).
package initd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/appargs"
	"github.com/man8s/mbctl/internal/envfile"
	"github.com/man8s/mbctl/internal/passwd"
	"github.com/man8s/mbctl/internal/protect"
	"github.com/man8s/mbctl/internal/signals"
	"github.com/man8s/mbctl/internal/supervise"
	"github.com/man8s/mbctl/internal/waitfor"
)

// Environment keys man8s-init reads (DESIGN.md, issue 5).
const (
	keyArgs        = "MAN8S_APPLICATION_ARGS"
	keyUser        = "MAN8S_APPLICATION_USER"
	keyStopSignal  = "MAN8S_STOP_SIGNAL"
	keyStopTimeout = "MAN8S_STOP_TIMEOUT"
	keyWaitFor     = "MAN8S_WAIT_FOR"
	keyWaitTimeout = "MAN8S_WAIT_TIMEOUT"
)

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
}

// Run performs man8s-init's steps and supervises the application. It
// returns the exit status for the process.
func Run(ctx context.Context, opts Options) int {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.EnvFile == "" {
		opts.EnvFile = filepath.Join(opts.Root, "man8env.env")
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	step := func(name, format string, args ...any) {
		fmt.Fprintf(opts.Log, "man8s-init: %s: %s\n", name, fmt.Sprintf(format, args...))
	}

	env, err := envfile.ReadFile(opts.EnvFile)
	if err != nil {
		step("env", "%v", err)
		return 1
	}
	vars := env.Map()
	step("env", "loaded %d variables from %s", len(vars), opts.EnvFile)

	st, err := protect.Restore(opts.Root)
	if err != nil {
		step("restore", "%v", err)
		return 1
	}
	step("restore", "%d files, %d dirs, %d symlinks restored into /run and /tmp", st.Files, st.Dirs, st.Symlinks)

	if spec := strings.TrimSpace(vars[keyWaitFor]); spec != "" {
		targets, err := waitfor.Parse(spec)
		if err == nil {
			var timeout time.Duration
			if timeout, err = waitfor.ParseTimeout(vars[keyWaitTimeout]); err == nil {
				start := time.Now()
				err = waitfor.Wait(ctx, targets, waitfor.Options{Timeout: timeout, Log: stepLogger(opts.Log, "wait")})
				if err == nil {
					step("wait", "%d dependencies met after %.1fs", len(targets), time.Since(start).Seconds())
				}
			}
		}
		if err != nil {
			step("wait", "%v", err)
			return 1
		}
	}

	sup, err := appOptions(opts.Root, vars)
	if err != nil {
		step("app", "%v", err)
		return 1
	}
	sup.Env = mergeEnv(os.Environ(), env.Environ())
	sup.Signals = opts.Signals
	step("app", "starting %q", sup.Argv)
	status, err := supervise.Run(ctx, sup)
	if err != nil {
		step("app", "%v", err)
	} else {
		step("app", "exited with status %d", status)
	}
	return status
}

// appOptions builds the supervisor's options from the environment file.
func appOptions(root string, vars map[string]string) (supervise.Options, error) {
	var o supervise.Options
	_, err := os.Stat(filepath.Join(root, "bin/sh"))
	if o.Argv, err = appargs.Command(vars[keyArgs], err == nil); err != nil {
		return o, fmt.Errorf("%s: %w", keyArgs, err)
	}
	if s := vars[keyStopSignal]; s != "" {
		sig, err := signals.Parse(s)
		if err != nil {
			return o, fmt.Errorf("%s: %w", keyStopSignal, err)
		}
		o.StopSignal = sig
	}
	if s := vars[keyStopTimeout]; s != "" {
		d, err := waitfor.ParseTimeout(s)
		if err != nil {
			return o, fmt.Errorf("%s: %w", keyStopTimeout, err)
		}
		o.StopTimeout = d
	}
	if spec := vars[keyUser]; spec != "" {
		u, err := passwd.Lookup(root, spec)
		if err != nil {
			return o, fmt.Errorf("%s: %w", keyUser, err)
		}
		o.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	return o, nil
}

// mergeEnv returns base with the assignments of over added, over winning.
func mergeEnv(base, over []string) []string {
	keys := map[string]bool{}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		keys[k] = true
	}
	out := slices.DeleteFunc(slices.Clone(base), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return keys[k]
	})
	return append(out, over...)
}
