// Package imageinit recognises the init or process supervisor an image
// runs as its entrypoint (tini, s6-overlay, systemd ...) and chooses how
// man8s-init starts it: supervising it as its child (ProcessTwo=yes) or
// setting up and then exec'ing it as PID 1 (ProcessTwo=no).
//
// # What is recognised
//
// Detection looks at argv[0] of the image's entrypoint+cmd, by its base name
// and by the base name of the file it resolves to inside the rootfs
// (symbolic links followed, absolute ones relative to the rootfs, never
// leaving it), so /sbin/init -> ../lib/systemd/systemd is systemd. A bare
// name ("tini") is looked up in a default PATH inside the rootfs.
//
//   - tini: tini, tini-static, tini-<arch> ...; docker-init (Docker's --init,
//     which is tini)
//   - dumb-init: dumb-init, dumb-init_<version>_<arch>
//   - catatonit
//   - s6-overlay: /init, when the rootfs has /package/admin/s6-overlay* or a
//     /command directory
//   - systemd: a file named systemd (/lib/systemd/systemd,
//     /usr/lib/systemd/systemd, or what /sbin/init links to)
//   - runit: runit, runit-init, runsvdir
//   - supervisord: supervisord, also run by an interpreter
//     ("python3 /usr/bin/supervisord", "python -m supervisor.supervisord")
//
// A shell wrapper of the form [sh, -c, SCRIPT] (sh, bash, ash, dash) is
// looked through when SCRIPT is a single simple command: its first word, after
// an optional "exec", is detected as argv[0]. Anything else behind a shell
// (pipelines, several commands, expansions in the command name) is "none".
// An entrypoint script that starts an init itself is "none" too: detection
// does not read scripts.
package imageinit

import (
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/host/provision/probe"
)

// Kind names an init or supervisor.
type Kind string

// The kinds Detect reports.
const (
	Tini        Kind = "tini"
	DumbInit    Kind = "dumb-init"
	Catatonit   Kind = "catatonit"
	S6Overlay   Kind = "s6-overlay"
	Systemd     Kind = "systemd"
	Runit       Kind = "runit"
	Supervisord Kind = "supervisord"
	None        Kind = "none"
)

// Detection is what Detect found.
type Detection struct {
	Kind Kind
	// Evidence says, for a person, why: `entrypoint "/sbin/tini" (tini)`.
	Evidence string
}

// searchPath is where a bare command name is looked up in the rootfs (the
// image's PATH is not consulted: Docker's default PATH covers the inits).
var searchPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Detect inspects argv (the image's entrypoint followed by its cmd) and the
// unpacked rootfs at rootfs and reports which init, if any, the image runs.
// Paths are resolved inside rootfs. It fails only when rootfs cannot be
// opened; a path that cannot be resolved is judged by its name.
func Detect(rootfs string, argv []string) (Detection, error) {
	root, err := unix.Open(rootfs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Detection{}, fmt.Errorf("detecting the init of rootfs %s: %w", rootfs, &os.PathError{Op: "open", Path: rootfs, Err: err})
	}
	defer unix.Close(root)
	rootPath, err := fsutil.FdPath(root)
	if err != nil {
		return Detection{}, fmt.Errorf("detecting the init of rootfs %s: %w", rootfs, err)
	}
	r := resolver{root: root, rootPath: rootPath}
	if len(argv) == 0 {
		return Detection{Kind: None, Evidence: "the image has no entrypoint or cmd"}, nil
	}
	cmd, via := argv, ""
	if inner, ok := shellCommand(argv); ok {
		cmd, via = inner, fmt.Sprintf(" (run by %s -c)", argv[0])
	}
	what := fmt.Sprintf("entrypoint %q%s", cmd[0], via)

	resolved, found := r.lookup(cmd[0])
	names := []string{path.Base(cmd[0])}
	if found && path.Base(resolved) != names[0] {
		names = append(names, path.Base(resolved))
	}
	target := ""
	if found && resolved != cmd[0] {
		target = " -> " + resolved
	}
	for _, name := range names {
		if k := kindOfName(name); k != None {
			return Detection{Kind: k, Evidence: fmt.Sprintf("%s%s (%s)", what, target, k)}, nil
		}
	}
	if isInterpreter(names[0]) {
		for _, a := range cmd[1:] {
			if path.Base(a) == "supervisord" || a == "supervisor.supervisord" {
				return Detection{Kind: Supervisord, Evidence: fmt.Sprintf("%s runs %q (supervisord)", what, a)}, nil
			}
		}
	}
	if found && resolved == "/init" {
		if ev := r.s6Evidence(); ev != "" {
			return Detection{Kind: S6Overlay, Evidence: fmt.Sprintf("%s with %s (s6-overlay)", what, ev)}, nil
		}
	}
	return Detection{Kind: None, Evidence: fmt.Sprintf("%s%s is no known init", what, target)}, nil
}

// kindOfName recognises an init by the base name of its file.
func kindOfName(name string) Kind {
	switch {
	case name == "tini" || strings.HasPrefix(name, "tini-") || name == "docker-init":
		return Tini
	case name == "dumb-init" || strings.HasPrefix(name, "dumb-init_") || strings.HasPrefix(name, "dumb-init-"):
		return DumbInit
	case name == "catatonit":
		return Catatonit
	case name == "systemd":
		return Systemd
	case name == "runit" || name == "runit-init" || name == "runsvdir":
		return Runit
	case name == "supervisord":
		return Supervisord
	}
	return None
}

// isInterpreter reports whether name is a Python interpreter, which may run
// supervisord as a script.
func isInterpreter(name string) bool {
	return strings.HasPrefix(name, "python")
}

// shellCommand returns the command a [sh, -c, SCRIPT] wrapper runs, if
// SCRIPT is one simple command without expansions.
func shellCommand(argv []string) ([]string, bool) {
	if len(argv) < 3 || argv[1] != "-c" {
		return nil, false
	}
	switch path.Base(argv[0]) {
	case "sh", "bash", "ash", "dash":
	default:
		return nil, false
	}
	words, err := appargs.Words(argv[2])
	if err != nil || len(words) == 0 {
		return nil, false
	}
	if words[0] == "exec" {
		words = words[1:]
	}
	if len(words) == 0 || words[0] == "" {
		return nil, false
	}
	return words, true
}

// resolver resolves paths inside a rootfs opened as root.
type resolver struct {
	root     int
	rootPath string // the path the kernel has for root
}

// lookup resolves the command name cmd inside the rootfs: an absolute path
// as it is, a relative one with a '/' from "/", a bare name in searchPath.
// It returns the real path of the file inside the rootfs (symbolic links
// resolved) and whether there is one.
func (r resolver) lookup(cmd string) (string, bool) {
	if strings.Contains(cmd, "/") {
		return r.realPath(cmd)
	}
	for _, dir := range searchPath {
		if p, ok := r.realPath(path.Join(dir, cmd)); ok {
			return p, true
		}
	}
	return "", false
}

// realPath resolves unsafePath inside the rootfs and returns where the file
// really is, as an absolute path inside the rootfs.
func (r resolver) realPath(unsafePath string) (string, bool) {
	p, err := fsutil.RealPathInRoot(r.root, r.rootPath, unsafePath, unix.O_PATH)
	return p, err == nil
}

// exists reports whether unsafePath exists inside the rootfs; dir asks for
// a directory.
func (r resolver) exists(unsafePath string, dir bool) bool {
	flags := unix.O_PATH
	if dir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := fsutil.OpenInRoot(r.root, unsafePath, flags)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// s6Evidence describes what marks the rootfs as s6-overlay's, or returns "".
func (r resolver) s6Evidence() string {
	fd, err := fsutil.OpenInRoot(r.root, "/package/admin", unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil {
		names, _ := readDirNames(fd)
		unix.Close(fd)
		for _, n := range names {
			if strings.HasPrefix(n, "s6-overlay") {
				return "/package/admin/" + n
			}
		}
	}
	if r.exists("/command", true) {
		return "/command"
	}
	return ""
}

// readDirNames lists the directory open as fd; fd stays open.
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

// Mode is how man8s-init runs the image's command: one of man8env's init
// modes, or Auto at pull.
type Mode = man8env.InitMode

// The init modes a pull accepts.
const (
	// Auto chooses from the detection (see Choose).
	Auto Mode = "auto"
	// Supervise: nspawn's stub init is PID 1, man8s-init PID 2 supervising
	// the app (ProcessTwo=yes).
	Supervise = man8env.InitSupervise
	// ExecPID1: man8s-init is PID 1, sets up, then execs the image's init
	// (ProcessTwo=no).
	ExecPID1 = man8env.InitExecPID1
)

// Modes lists the valid modes in the order they are documented.
func Modes() []Mode { return []Mode{Auto, Supervise, ExecPID1} }

// ParseMode returns the mode named s ("" is Auto).
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return Auto, nil
	}
	for _, m := range Modes() {
		if string(m) == s {
			return m, nil
		}
	}
	var valid []string
	for _, m := range Modes() {
		valid = append(valid, string(m))
	}
	return "", fmt.Errorf("unknown init mode %q (valid: %s)", s, strings.Join(valid, ", "))
}

// needsPID1 reports whether an init of kind k refuses to run as anything but
// PID 1.
func needsPID1(k Kind) bool {
	return k == S6Overlay || k == Systemd
}

// Choose returns the mode to use and why. Auto picks ExecPID1 for inits that
// insist on being PID 1 (s6-overlay, systemd), and for another init it
// detected (tini, dumb-init, ...) only when the probe's findings f show that
// it behaves as PID 1 should (probe.Findings.AsPID1) and that exec-pid1
// mode's stop (KillSignal) is its own stop signal; everything else is
// supervised. Without findings (no probe, or it failed: f is nil) the name
// decides, and a detected init other than s6-overlay or systemd is
// supervised. An explicit Supervise or ExecPID1 is used as requested.
func Choose(requested Mode, d Detection, f *probe.Findings) (mode Mode, reason string) {
	kind := d.Kind
	if kind == "" {
		kind = None
	}
	verdict, why := probe.Unknown, ""
	if f != nil {
		verdict, why = f.AsPID1()
	}
	switch requested {
	case Supervise, ExecPID1:
		reason = fmt.Sprintf("%s requested explicitly (detected init: %s)", requested, kind)
		if requested == Supervise && needsPID1(kind) {
			reason += fmt.Sprintf("; %s normally needs exec-pid1", kind)
		}
		if requested == ExecPID1 && verdict == probe.No {
			reason += fmt.Sprintf("; the probe: as PID 1 %s", why)
		}
		return requested, reason
	}
	switch {
	case needsPID1(kind):
		reason = fmt.Sprintf("auto: %s must run as PID 1, so man8s-init sets up and execs it", kind)
		if verdict == probe.No {
			reason += fmt.Sprintf("; the probe: as PID 1 %s", why)
		}
		return ExecPID1, reason
	case kind == None:
		return Supervise, "auto: no init detected, man8s-init supervises the app"
	case f == nil:
		return Supervise, fmt.Sprintf("auto: %s runs fine under man8s-init's supervisor", kind)
	case verdict == probe.No:
		return Supervise, fmt.Sprintf("auto: %s runs under man8s-init's supervisor: the probe shows it does not behave as PID 1 should (%s)", kind, why)
	case verdict == probe.Unknown:
		return Supervise, fmt.Sprintf("auto: %s runs fine under man8s-init's supervisor (the probe could not tell how it behaves as PID 1: %s)", kind, why)
	}
	kill := killSignalOf(ExecPID1, d)
	if f.StopSignal != kill || !f.Takes(kill) {
		return Supervise, fmt.Sprintf("auto: %s runs under man8s-init's supervisor: it behaves as PID 1 (%s), but its stop signal is %s and in exec-pid1 mode a stop sends it %s",
			kind, why, signals.Name(f.StopSignal), signals.Name(kill))
	}
	return ExecPID1, fmt.Sprintf("auto: the probe shows %s behaves as PID 1 should (%s), so man8s-init sets up and execs it", kind, why)
}

// StopWarning says, for a person, why a stop of the app in mode will not
// end it, from the probe's findings f; "" when it will, or when f cannot
// tell (nil, or the app exited by itself in the probe). In supervise mode
// man8s-init sends the app, its child, the stop signal, and SIGKILLs it
// MAN8S_STOP_TIMEOUT later: an app that ignores the signal waits for that.
// In exec-pid1 mode nspawn sends PID 1 the KillSignal, which a PID 1 that
// does not take it never gets.
func StopWarning(mode Mode, d Detection, f *probe.Findings) string {
	if f == nil || f.Early != nil {
		return ""
	}
	switch mode {
	case ExecPID1:
		kill := killSignalOf(mode, d)
		if f.MayTake(kill) {
			return ""
		}
		return fmt.Sprintf("as PID 1 the app does not handle %s, which stops it in exec-pid1 mode: the kernel drops it, and a stop will kill it only after systemd's TimeoutStopSec",
			signals.Name(kill))
	case Supervise:
		stop := f.StopSignal
		if f.EndsAsChild(stop) {
			return ""
		}
		how := "ignores"
		if !f.Ignored.Has(stop) {
			how = "neither handles nor is ended by"
		}
		return fmt.Sprintf("the app %s %s, its stop signal: a stop will kill it after %s (10 s unless man8env.env sets it)",
			how, signals.Name(stop), man8env.KeyStopTimeout)
	}
	return ""
}

// killSignalOf is KillSignal as a signal.
func killSignalOf(mode Mode, d Detection) syscall.Signal {
	sig, err := signals.Parse(KillSignal(mode, d))
	if err != nil {
		panic(err) // KillSignal returns only valid names
	}
	return sig
}

// KillSignal returns the KillSignal= for the settings file: the signal
// nspawn sends PID 1 to stop the machine. In supervise mode PID 1 is
// nspawn's stub init, which powers off on SIGRTMIN+3; in exec-pid1 mode it
// is the image's init: SIGRTMIN+3 for systemd, SIGTERM for the others.
func KillSignal(mode Mode, d Detection) string {
	if mode == ExecPID1 && d.Kind != Systemd {
		return "SIGTERM"
	}
	return "SIGRTMIN+3"
}
