// Package probe watches an image's entrypoint run as PID 1 for a few
// seconds, to judge it by what it does rather than by its name: which
// signals it catches, blocks and ignores, whether it reaps the children it
// adopts, and whether it exits on its stop signal. mbctl runs it at
// 'machines pull' (to choose the init mode, and to warn about an app that a
// stop will not end) and for 'oci inspect --probe'.
//
// # How it runs
//
// The unpacked image is the lower layer of an overlay whose upper layer is
// the probe's own dir: the image's tree is never written. man8s-init and
// busybox are installed into the overlay, the machine's man8env.env (in
// exec-pid1 mode) is written to its /man8env.env, and systemd-nspawn runs
// it without network (--private-network) and without machined
// (--register=no), in a user namespace as every machine is: man8s-init
// sets up as it would in the machine (environment, user, working dir) and
// execs the entrypoint as PID 1. Before it does, a busybox shell as PID 1
// leaves one child behind that exits a moment later: the entrypoint
// inherits it, as a PID 1 inherits every orphan of its machine, and must
// reap it.
//
// The probe reads the entrypoint's /proc/PID/status from the host
// (SigCgt, SigBlk, SigIgn), watches the child through a pidfd (exited,
// then reaped or left a zombie), sends the stop signal and measures how
// long PID 1 takes to exit. Then the machine is stopped: SIGTERM to the
// nspawn it started (which SIGKILLs PID 1 and cleans up), SIGKILL to both
// if that takes long.
//
// # Nothing is left
//
// Every mount (the idmapped image, the overlay, a tmpfs over nspawn's
// /run/systemd/nspawn) lives in a mount namespace of the probe's own
// thread, and nspawn gets SIGTERM if that thread dies (PR_SET_PDEATHSIG):
// a kill -9 of mbctl takes them all down with it. The probe's dir is
// recorded in the run's journal before it is made, so that the next mbctl
// run removes what a killed one left (journal.Recover). The whole probe is
// bounded (Config.Timeout), so a probe never hangs a pull.
//
// # The user namespace
//
// nspawn cannot idmap an overlay, so the probe idmaps the image itself
// (mount_setattr MOUNT_ATTR_IDMAP) into a range of host uids of its own
// and gives that range to nspawn (--private-users=BASE:65536,
// --private-users-ownership=off). The range is chosen from
// 0x70000000-0x7FFDFFFF, above those systemd-nspawn picks from
// (0x00080000-0x6FFFFFFF), and claimed by the name of the probe's dir, so
// two probes never share one.
package probe

import (
	"fmt"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/signals"
)

// Findings are what a probe saw the entrypoint do as PID 1.
type Findings struct {
	// StopSignal is the signal a stop sends the app (MAN8S_STOP_SIGNAL),
	// the one the probe sent.
	StopSignal syscall.Signal
	// Caught, Ignored and Blocked are PID 1's signal dispositions
	// (SigCgt, SigIgn, SigBlk) after it had run for Config.Settle.
	Caught, Ignored, Blocked SignalSet
	// SigWait: PID 1 was waiting in sigwait(3) or sigtimedwait(2), as tini
	// and dumb-init do. The signals it waits for are then neither caught
	// nor blocked as /proc shows them (the kernel unblocks them for the
	// wait): such an init shows what it takes only by its reaction.
	SigWait bool
	Reap    Reap
	Stop    Stop
	// Early is set when the app exited by itself before the probe was
	// done with it: what was seen until then is all there is.
	Early *Exit
	// Output is the end of the machine's console output (man8s-init's
	// steps, then the app's).
	Output string
	// Took is how long the probe took, machine start and stop included.
	Took time.Duration
}

// Reap is what became of the child that PID 1 inherited.
type Reap struct {
	// Tested is false when there was no child to inherit (no busybox to
	// make one) or the app ended first.
	Tested bool
	// Reaped: PID 1 reaped the child within Config.ReapWait of its exit;
	// After is how long that took.
	Reaped bool
	After  time.Duration
	// Zombies counts PID 1's children that were zombies at the end.
	Zombies int
}

// Stop is what the stop signal did.
type Stop struct {
	// Sent is false when the app ended before the probe sent it.
	Sent   bool
	Signal syscall.Signal
	// Exited: PID 1 exited After the signal, with Status (as
	// systemd-nspawn passes it on; -1 when not known). Otherwise After is
	// how long the probe waited.
	Exited bool
	After  time.Duration
	Status int
}

// Exit is how the app ended by itself.
type Exit struct {
	// After is the time from the exec of the entrypoint to its exit.
	After time.Duration
	// Status is its exit status as systemd-nspawn passes it on (-1: not
	// known).
	Status int
}

// Handles reports whether PID 1's dispositions say it takes sig: it has a
// handler for it or blocks it (to take it from a signalfd, as catatonit
// does), and does not ignore it. A signal that PID 1 neither catches nor
// blocks nor waits for never reaches it: the kernel drops it.
func (f *Findings) Handles(sig syscall.Signal) bool {
	return !f.Ignored.Has(sig) && (f.Caught.Has(sig) || f.Blocked.Has(sig))
}

// Takes reports whether PID 1 is known to take sig: Handles, or it exited
// when the probe sent it sig (what shows an init that waits in sigwait).
func (f *Findings) Takes(sig syscall.Signal) bool {
	return f.Handles(sig) || (f.Stop.Sent && f.Stop.Exited && f.Stop.Signal == sig)
}

// MayTake reports whether PID 1 may take sig: Takes, or it waits for
// signals and the probe could not tell which (SigWait). A PID 1 that may
// not take sig certainly drops it.
func (f *Findings) MayTake(sig syscall.Signal) bool {
	return f.Takes(sig) || (f.SigWait && !f.Ignored.Has(sig))
}

// EndsAsChild reports whether sig would end the app run as anything but
// PID 1 (a child of man8s-init, in supervise mode): it does not ignore sig,
// and either handles it or sig is one whose default action ends a process.
// A handler that does not exit cannot be told from one that does: see Stop
// for what the handler did.
func (f *Findings) EndsAsChild(sig syscall.Signal) bool {
	if f.Ignored.Has(sig) {
		return false
	}
	return f.MayTake(sig) || endsByDefault(sig)
}

// endsByDefault reports whether sig's default action ends the process
// (terminate or core dump), signal(7).
func endsByDefault(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG, syscall.SIGWINCH,
		syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return false
	}
	return sig >= 1 && sig <= 64
}

// Verdict says whether an entrypoint behaves as PID 1 should.
type Verdict string

// Verdicts of AsPID1.
const (
	Yes     Verdict = "yes"
	No      Verdict = "no"
	Unknown Verdict = "unknown"
)

// AsPID1 judges the entrypoint as a PID 1: it must handle SIGTERM or its
// stop signal (a PID 1 that does not never sees them) and reap the children
// it adopts. The reason says what decided, for a person. It is Unknown when
// the app exited by itself or the reaping could not be tested.
func (f *Findings) AsPID1() (Verdict, string) {
	if f.Early != nil {
		return Unknown, fmt.Sprintf("the app exited by itself %s after it started%s", ms(f.Early.After), statusText(f.Early.Status))
	}
	stop := f.StopSignal
	if !f.Takes(syscall.SIGTERM) && !f.Takes(stop) {
		what := "SIGTERM"
		if stop != syscall.SIGTERM {
			what = fmt.Sprintf("SIGTERM or %s, its stop signal", signals.Name(stop))
		}
		if f.MayTake(syscall.SIGTERM) || f.MayTake(stop) {
			return No, fmt.Sprintf("it waits for signals, but did not exit on %s", signals.Name(stop))
		}
		return No, fmt.Sprintf("it does not handle %s: as PID 1 the kernel drops it", what)
	}
	handles := "SIGTERM"
	if !f.Takes(syscall.SIGTERM) {
		handles = signals.Name(stop)
	}
	if !f.Reap.Tested {
		return Unknown, fmt.Sprintf("it handles %s; whether it reaps could not be tested", handles)
	}
	if !f.Reap.Reaped {
		return No, fmt.Sprintf("it handles %s, but leaves the children it adopts as zombies", handles)
	}
	return Yes, fmt.Sprintf("it handles %s and reaps the children it adopts", handles)
}

// StopText says, for a person, what the stop signal did.
func (f *Findings) StopText() string {
	s := f.Stop
	switch {
	case !s.Sent:
		return "not sent: the app had exited by itself"
	case s.Exited:
		return fmt.Sprintf("exited %s after %s%s", ms(s.After), signals.Name(s.Signal), statusText(s.Status))
	default:
		return fmt.Sprintf("did not exit within %s of %s", ms(s.After), signals.Name(s.Signal))
	}
}

// ReapText says, for a person, what became of the adopted child.
func (f *Findings) ReapText() string {
	r := f.Reap
	switch {
	case !r.Tested:
		return "not tested"
	case r.Reaped:
		return fmt.Sprintf("yes: an adopted child was reaped %s after it exited", ms(r.After))
	default:
		return fmt.Sprintf("no: an adopted child stayed a zombie for %s (%d %s at the end)", ms(r.After), r.Zombies, plural(r.Zombies, "zombie", "zombies"))
	}
}

func statusText(st int) string {
	if st < 0 {
		return ""
	}
	return fmt.Sprintf(" with status %d", st)
}

// ms shows d in milliseconds below 10 s, else in seconds.
func ms(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
