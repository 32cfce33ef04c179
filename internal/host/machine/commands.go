package machine

// The commands that run, control and enter machines: systemd-nspawn in the
// foreground, systemd's units (machinectl, systemctl, journalctl) where
// systemd is PID 1, and nsenter into a running machine. These functions only
// build argument lists; the caller runs them, so the exact commands are
// unit-tested.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// HostInit says what this host's init offers.
type HostInit struct {
	// Systemd is true when systemd is PID 1 (/run/systemd/system exists):
	// machines can be started as systemd-nspawn@NAME.service.
	Systemd bool
	// Bus is true when the system bus is there; without it nspawn must not
	// register with machined and must not create its own scope unit.
	Bus bool
}

// DetectHostInit looks at root ("/" on the host) for systemd and its bus.
func DetectHostInit(root string) HostInit {
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(root, p)); return err == nil }
	return HostInit{
		Systemd: exists("run/systemd/system"),
		Bus:     exists("run/dbus/system_bus_socket"),
	}
}

// SettingsDirs are the directories systemd-nspawn reads NAME.nspawn from
// with full trust.
func SettingsDirs() []string { return []string{"/etc/systemd/nspawn", "/run/systemd/nspawn"} }

// ReadsSettings reports whether systemd-nspawn finds settings links in
// dir (a configured paths.nspawn).
func ReadsSettings(dir string) bool { return slices.Contains(SettingsDirs(), filepath.Clean(dir)) }

// RunCommand is the foreground command of machine p: systemd-nspawn reads the
// machine's settings file itself (found by the machine name).
func RunCommand(p Paths, h HostInit) []string {
	argv := []string{"systemd-nspawn", "--quiet", "--machine=" + p.Name, "--directory=" + p.Rootfs}
	if !h.Bus {
		argv = append(argv, "--register=no", "--keep-unit")
	}
	return argv
}

// Unit is the systemd service that runs machine name.
func Unit(name string) string { return "systemd-nspawn@" + name + ".service" }

// Verbs of ServiceCommand.
const (
	VerbStart   = "start"
	VerbStop    = "stop"
	VerbRestart = "restart"
	VerbStatus  = "status"
	VerbEnable  = "enable"
	VerbDisable = "disable"
)

// ServiceCommand is the command that does verb to machine name through systemd.
// start, enable and disable go through machinectl (which also handles
// machines.target); stop, restart and status act on the unit, so a stop
// is nspawn's orderly one: SIGTERM to nspawn, KillSignal= to PID 1.
func ServiceCommand(verb, name string) ([]string, error) {
	switch verb {
	case VerbStart, VerbEnable, VerbDisable:
		return []string{"machinectl", verb, name}, nil
	case VerbStop, VerbRestart:
		return []string{"systemctl", verb, Unit(name)}, nil
	case VerbStatus:
		return []string{"systemctl", "status", "--no-pager", "--full", Unit(name)}, nil
	}
	return nil, fmt.Errorf("unknown service verb %q", verb)
}

// LogsCommand is the journal of machine name's unit: the app's output, since
// man8s-init and the app write to nspawn's console.
func LogsCommand(name string, follow bool, lines int) []string {
	argv := []string{"journalctl", "--no-pager", "--unit=" + Unit(name)}
	if lines > 0 {
		argv = append(argv, fmt.Sprintf("--lines=%d", lines))
	}
	if follow {
		argv = append(argv, "--follow")
	}
	return argv
}

// ShellOptions say how to enter a running machine.
type ShellOptions struct {
	// Leader is the machine's PID 1 on the host.
	Leader int
	// NetworkOnly enters only the network namespace and runs a host
	// command there.
	NetworkOnly bool
	// Command is what to run (default: see ShellCommand).
	Command []string
}

// ShellCommand is the nsenter command that enters machine p through its leader.
// By default it enters every namespace of the machine (user, mount, pid,
// net, uts, ipc, cgroup) with the machine's root and working dir and runs
// opts.Command or a login shell: the image's /bin/sh, else man8s-init's
// busybox; the caller gives it the machine's environment (nsenter passes
// its own on). With NetworkOnly it enters only the network namespace and
// runs opts.Command (default /bin/sh) from the host.
func ShellCommand(p Paths, opts ShellOptions) ([]string, error) {
	if opts.Leader <= 0 {
		return nil, fmt.Errorf("machine %s: no leader process", p.Name)
	}
	target := fmt.Sprintf("--target=%d", opts.Leader)
	cmd := opts.Command
	if opts.NetworkOnly {
		if len(cmd) == 0 {
			cmd = []string{"/bin/sh"}
		}
		return append([]string{"nsenter", target, "--net", "--"}, cmd...), nil
	}
	if len(cmd) == 0 {
		var err error
		if cmd, err = loginShell(p.Rootfs); err != nil {
			return nil, fmt.Errorf("machine %s: %w", p.Name, err)
		}
	}
	argv := []string{"nsenter", target, "--user", "--mount", "--pid", "--net", "--uts", "--ipc", "--cgroup",
		"--root", "--wd", "--"}
	return append(argv, cmd...), nil
}

// loginShell picks the shell for an interactive session in rootfs.
func loginShell(rootfs string) ([]string, error) {
	switch {
	case exists(rootfs, "bin/sh"):
		return []string{"/bin/sh", "-l"}, nil
	case exists(rootfs, man8env.BusyboxPath):
		return []string{man8env.BusyboxPath, "sh", "-l"}, nil
	}
	return nil, fmt.Errorf("the image has no /bin/sh and no /man8s-init/busybox: name a command after --, or install a busybox with 'mbctl oci man8init %s'", rootfs)
}

// exists reports whether p exists in rootfs; a symlink counts as present
// (it may be absolute and only resolve inside the machine).
func exists(rootfs, p string) bool {
	_, err := os.Lstat(filepath.Join(rootfs, p))
	return err == nil
}
