package testbed

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A test binary killed by a signal cannot run its cleanups. So that its
// namespaces and daemons do not pile up, each testbed namespace is named
// after the process that owns it (mbtb-PID-RANDOM) and the PIDs the testbed
// starts in it are recorded in stateDir/NAME. The next testbed removes
// namespaces whose owner is gone, after killing the recorded processes that
// still run inside that very namespace.
const (
	namePrefix = "mbtb-"
	stateDir   = "/run/mbctl-testbed"
)

func recordOwner(name string) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("recording testbed %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, name), nil, 0o600); err != nil {
		return fmt.Errorf("recording testbed %s: %w", name, err)
	}
	return nil
}

func recordPID(name string, pid int) error {
	f, err := os.OpenFile(filepath.Join(stateDir, name), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("recording pid %d of testbed %s: %w", pid, name, err)
	}
	_, err = fmt.Fprintln(f, pid)
	return errors.Join(err, f.Close())
}

func forgetOwner(name string) error {
	if err := os.Remove(filepath.Join(stateDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// sweep removes the namespaces named prefix+PID-... whose owning process is
// gone. Testbeds sweep namePrefix; the sweep's own test uses another prefix
// so that the sweeps of tests running at the same time leave its namespace
// alone.
func sweep(log *slog.Logger, prefix string) error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		owner, ok := ownerPID(name, prefix)
		if !ok || processExists(owner) {
			continue
		}
		log.Info("removing leftover testbed namespace", "netns", name, "owner", owner)
		errs = append(errs, killRecorded(name), deleteNetns(name), forgetOwner(name))
	}
	return errors.Join(errs...)
}

func ownerPID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil && pid > 0
}

func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// killRecorded SIGKILLs the recorded processes of testbed name that still
// live in its network namespace (a recycled PID elsewhere is left alone).
func killRecorded(name string) error {
	data, err := os.ReadFile(filepath.Join(stateDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var nsStat unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &nsStat); err != nil {
		return nil // the namespace is gone, so are its processes' ties to it
	}
	for _, field := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(field)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		if st.Ino == nsStat.Ino && st.Dev == nsStat.Dev {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}
