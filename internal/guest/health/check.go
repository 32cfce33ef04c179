// Package health is man8s-init's readiness and health checking: when the
// app counts as ready (MAN8S_READY, else the image's HEALTHCHECK, else
// "started"), and, once it is, the health check on its interval
// (MAN8S_HEALTH, else the HEALTHCHECK) with the image's Retries, and what
// happens when the app becomes unhealthy (MAN8S_ON_UNHEALTHY). The state
// is published in the machine at man8env.HealthPath for the host.
package health

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/waitfor"
)

// Docker's HEALTHCHECK defaults.
const (
	DefaultInterval = 30 * time.Second
	DefaultTimeout  = 30 * time.Second
	DefaultRetries  = 3
	// DefaultReadyTimeout bounds the wait for readiness: below the 90 s
	// that systemd gives a unit to start (DefaultTimeoutStartSec), so
	// that man8s-init, not systemd, says why the start failed.
	DefaultReadyTimeout = 80 * time.Second
)

// Check is one condition: targets that must all be met, or a command
// that must exit 0. The zero Check always holds ("started").
type Check struct {
	// Targets are MAN8S_WAIT_FOR-style targets (tcp://, http(s)://,
	// file://, ping://).
	Targets []waitfor.Target
	// Argv is a command run inside the machine, as the app's user.
	Argv []string
	// Desc names the check in logs and the state file.
	Desc string
}

// IsZero reports whether c always holds.
func (c Check) IsZero() bool { return len(c.Targets) == 0 && len(c.Argv) == 0 }

// SpecStarted is the value of MAN8S_READY that makes the app ready as soon
// as it has started, whatever the image's HEALTHCHECK.
const SpecStarted = "started"

// ParseSpec reads the value of MAN8S_READY or MAN8S_HEALTH (key names it
// in errors): "cmd:COMMAND" (run with /bin/sh -c, or split into words
// without a shell), or targets as MAN8S_WAIT_FOR takes them.
func ParseSpec(key, spec string, hasShell bool) (Check, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == SpecStarted {
		return Check{}, nil
	}
	if cmd, ok := strings.CutPrefix(spec, "cmd:"); ok {
		cmd = strings.TrimSpace(cmd)
		var argv []string
		var err error
		if hasShell {
			argv = []string{appargs.ShellPath, "-c", cmd}
		} else if argv, err = appargs.Words(cmd); err != nil {
			return Check{}, fmt.Errorf("%s=cmd:%s (no %s in the image): %w", key, cmd, appargs.ShellPath, err)
		}
		if len(argv) == 0 || cmd == "" {
			return Check{}, fmt.Errorf("%s=cmd: without a command", key)
		}
		return Check{Argv: argv, Desc: "cmd:" + cmd}, nil
	}
	ts, err := waitfor.Parse(spec)
	if err != nil {
		return Check{}, fmt.Errorf("%s: %w (or cmd:COMMAND, or %s)", key, err, SpecStarted)
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return Check{Targets: ts, Desc: strings.Join(names, " ")}, nil
}

// Params are the HEALTHCHECK's timing.
type Params struct {
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
}

// Config is everything man8s-init reads from man8env.env for readiness
// and health.
type Config struct {
	// Ready is the readiness condition; ReadyTimeout bounds the wait.
	Ready        Check
	ReadyTimeout time.Duration
	// Health runs after ready (zero: no health checks).
	Health Check
	Params Params
	// OnUnhealthy is MAN8S_ON_UNHEALTHY.
	OnUnhealthy man8env.OnUnhealthy
}

// ParseConfig reads the readiness and health keys of vars.
func ParseConfig(vars map[string]string, hasShell bool) (Config, error) {
	var c Config
	var errs []error
	bad := func(err error) { errs = append(errs, err) }
	dur := func(key string, def time.Duration) time.Duration {
		d, err := envfile.Duration(vars, key, def)
		if err != nil {
			bad(err)
		}
		return d
	}
	var image Check
	argv, err := man8env.ParseHealthcheck(vars[man8env.KeyHealthcheck], hasShell)
	if err != nil {
		bad(err)
	} else if argv != nil {
		image = Check{Argv: argv, Desc: "HEALTHCHECK " + strings.TrimSpace(vars[man8env.KeyHealthcheck])}
	}
	c.Params = Params{
		Interval:    dur(man8env.KeyHealthcheckInterval, DefaultInterval),
		Timeout:     dur(man8env.KeyHealthcheckTimeout, DefaultTimeout),
		StartPeriod: dur(man8env.KeyHealthcheckStartPeriod, 0),
		Retries:     DefaultRetries,
	}
	if s := strings.TrimSpace(vars[man8env.KeyHealthcheckRetries]); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			bad(fmt.Errorf("%s=%s: want a count of 1 or more", man8env.KeyHealthcheckRetries, s))
		} else {
			c.Params.Retries = n
		}
	}
	if c.Params.Interval <= 0 {
		c.Params.Interval = DefaultInterval
	}
	if c.Params.Timeout <= 0 {
		c.Params.Timeout = DefaultTimeout
	}
	c.ReadyTimeout = dur(man8env.KeyReadyTimeout, DefaultReadyTimeout)
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}

	c.Ready, c.Health = image, image
	if spec, ok := vars[man8env.KeyReady]; ok && strings.TrimSpace(spec) != "" {
		if c.Ready, err = ParseSpec(man8env.KeyReady, spec, hasShell); err != nil {
			bad(err)
		}
	}
	if spec, ok := vars[man8env.KeyHealth]; ok && strings.TrimSpace(spec) != "" {
		if strings.TrimSpace(spec) == "none" {
			c.Health = Check{}
		} else if c.Health, err = ParseSpec(man8env.KeyHealth, spec, hasShell); err != nil {
			bad(err)
		}
	}
	if c.OnUnhealthy, err = man8env.ParseOnUnhealthy(vars[man8env.KeyOnUnhealthy]); err != nil {
		bad(err)
	}
	return c, errors.Join(errs...)
}
