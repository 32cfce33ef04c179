package man8env

import (
	"fmt"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/format/appargs"
)

// HealthPath is the file in the machine where man8s-init publishes the
// app's readiness and health (a Health as JSON, replaced atomically). It
// lies on the machine's own /run (nspawn's tmpfs), so it is gone when the
// machine stops; the host reads it through the leader's /proc/PID/root.
const HealthPath = "/run/man8s/health.json"

// Health statuses.
const (
	// HealthStarting: the readiness condition has not held yet.
	HealthStarting = "starting"
	// HealthReady: ready, and there is no health check to run after.
	HealthReady = "ready"
	// HealthHealthy and HealthUnhealthy: the health check's verdict
	// (unhealthy after Retries failures in a row).
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	// HealthFailed: the readiness condition did not hold within
	// MAN8S_READY_TIMEOUT; the machine is ending.
	HealthFailed = "failed"
)

// Health is what man8s-init publishes at HealthPath.
type Health struct {
	Status string `json:"status"`
	// Ready is when READY=1 was sent (zero before).
	Ready time.Time `json:"ready,omitzero"`
	// ReadyCheck and HealthCheck describe the conditions in use.
	ReadyCheck  string `json:"ready_check,omitempty"`
	HealthCheck string `json:"health_check,omitempty"`
	// FailingStreak counts the health check's failures in a row.
	FailingStreak int `json:"failing_streak"`
	// LastCheck is when the last check ended; LastOutput what it said
	// (at most 4 KiB, as Docker keeps), LastExit its exit code (-1: not
	// a command, or it could not run).
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastOutput string    `json:"last_output,omitempty"`
	LastExit   int       `json:"last_exit"`
	// Checks counts the health checks run since the machine started.
	Checks int `json:"checks"`
	// Restarts counts the app's restarts by MAN8S_ON_UNHEALTHY=restart.
	Restarts int `json:"restarts,omitempty"`
}

// OnUnhealthy is what man8s-init does when the app becomes unhealthy
// (MAN8S_ON_UNHEALTHY).
type OnUnhealthy string

const (
	// OnUnhealthyNone (the default) only reports the state.
	OnUnhealthyNone OnUnhealthy = "none"
	// OnUnhealthyRestart stops the app (its stop signal, then SIGKILL)
	// and starts it again inside the machine; the machine stays up.
	OnUnhealthyRestart OnUnhealthy = "restart"
	// OnUnhealthyStop stops the app and ends the machine with a failure
	// status, so that the unit's Restart= policy acts.
	OnUnhealthyStop OnUnhealthy = "stop"
)

// ParseOnUnhealthy reads MAN8S_ON_UNHEALTHY; empty is OnUnhealthyNone.
func ParseOnUnhealthy(s string) (OnUnhealthy, error) {
	switch v := OnUnhealthy(strings.TrimSpace(s)); v {
	case "":
		return OnUnhealthyNone, nil
	case OnUnhealthyNone, OnUnhealthyRestart, OnUnhealthyStop:
		return v, nil
	}
	return "", fmt.Errorf("%s=%s: want %s, %s or %s", KeyOnUnhealthy, s, OnUnhealthyNone, OnUnhealthyRestart, OnUnhealthyStop)
}

// The forms of MAN8S_HEALTHCHECK, after the image's HEALTHCHECK Test.
const (
	HealthcheckNone     = "NONE"      // health checks off
	HealthcheckCmd      = "CMD"       // CMD <argv, POSIX-quoted>: exec'd directly
	HealthcheckCmdShell = "CMD-SHELL" // CMD-SHELL <command>: run with /bin/sh -c
)

// FormatHealthcheck turns an image's HEALTHCHECK Test (["CMD", argv...],
// ["CMD-SHELL", command] or ["NONE"]) into the value of MAN8S_HEALTHCHECK:
// the form, a space, and the argv quoted as MAN8S_APPLICATION_ARGS is, or
// the shell command as it is. An empty Test (inherit) gives "".
func FormatHealthcheck(test []string) (string, error) {
	if len(test) == 0 {
		return "", nil
	}
	switch test[0] {
	case HealthcheckNone:
		return HealthcheckNone, nil
	case HealthcheckCmd:
		if len(test) < 2 {
			return "", fmt.Errorf("HEALTHCHECK CMD without a command")
		}
		q, err := appargs.Quote(test[1:])
		if err != nil {
			return "", fmt.Errorf("HEALTHCHECK CMD: %w", err)
		}
		return HealthcheckCmd + " " + q, nil
	case HealthcheckCmdShell:
		if len(test) != 2 || strings.TrimSpace(test[1]) == "" {
			return "", fmt.Errorf("HEALTHCHECK CMD-SHELL wants one command string, got %d words", len(test)-1)
		}
		return HealthcheckCmdShell + " " + test[1], nil
	}
	return "", fmt.Errorf("HEALTHCHECK test %q: want CMD, CMD-SHELL or NONE first", test[0])
}

// ParseHealthcheck reads MAN8S_HEALTHCHECK: the argv to run, nil for
// NONE or empty. A CMD-SHELL command runs as [/bin/sh -c command], and
// needs the image's shell: hasShell false makes it an error.
func ParseHealthcheck(s string, hasShell bool) ([]string, error) {
	s = strings.TrimSpace(s)
	form, rest, _ := strings.Cut(s, " ")
	rest = strings.TrimSpace(rest)
	switch form {
	case "", HealthcheckNone:
		return nil, nil
	case HealthcheckCmd:
		argv, err := appargs.Words(rest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyHealthcheck, err)
		}
		if len(argv) == 0 {
			return nil, fmt.Errorf("%s=CMD without a command", KeyHealthcheck)
		}
		return argv, nil
	case HealthcheckCmdShell:
		if rest == "" {
			return nil, fmt.Errorf("%s=CMD-SHELL without a command", KeyHealthcheck)
		}
		if !hasShell {
			return nil, fmt.Errorf("%s=CMD-SHELL needs %s, which the image does not have (write CMD and the argv instead)", KeyHealthcheck, appargs.ShellPath)
		}
		return []string{appargs.ShellPath, "-c", rest}, nil
	}
	return nil, fmt.Errorf("%s=%s: want CMD ARGS..., CMD-SHELL COMMAND or NONE", KeyHealthcheck, s)
}
