package probe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/signals"
)

// SignalSet is a set of signals as /proc/PID/status shows one (SigCgt,
// SigIgn, SigBlk): bit n-1 stands for signal n.
type SignalSet uint64

// Has reports whether sig is in the set.
func (s SignalSet) Has(sig syscall.Signal) bool {
	return sig >= 1 && sig <= 64 && s&(1<<(uint(sig)-1)) != 0
}

// Signals lists the set's signals in ascending order.
func (s SignalSet) Signals() []syscall.Signal {
	var out []syscall.Signal
	for n := syscall.Signal(1); n <= 64; n++ {
		if s.Has(n) {
			out = append(out, n)
		}
	}
	return out
}

// Names lists the set's signals by their systemd names ("SIGTERM",
// "SIGRTMIN+3"), in ascending order; never nil.
func (s SignalSet) Names() []string {
	out := []string{}
	for _, sig := range s.Signals() {
		out = append(out, signals.Name(sig))
	}
	return out
}

// status is what the probe reads of /proc/PID/status.
type status struct {
	// State is the one-letter state: 'S', 'R', 'Z' ...
	State byte
	PPid  int
	// NSpid is the PID in each PID namespace the process is in, outermost
	// first: [host PID, ..., PID in its own namespace].
	NSpid                  []int
	Caught, Ignored, Block SignalSet
}

// inOwnNamespaceAs returns the process's PID in its innermost PID
// namespace when that is not the reader's, else 0.
func (s status) inOwnNamespaceAs() int {
	if len(s.NSpid) < 2 {
		return 0
	}
	return s.NSpid[len(s.NSpid)-1]
}

// parseStatus reads the fields of a /proc/PID/status text that the probe
// needs. Every one of them must be there.
func parseStatus(text []byte) (status, error) {
	var st status
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "State":
			if val == "" {
				err = errors.New("empty")
			} else {
				st.State = val[0]
			}
		case "PPid":
			st.PPid, err = strconv.Atoi(val)
		case "NSpid":
			for _, f := range strings.Fields(val) {
				n, perr := strconv.Atoi(f)
				if perr != nil {
					err = perr
					break
				}
				st.NSpid = append(st.NSpid, n)
			}
			if err == nil && len(st.NSpid) == 0 {
				err = errors.New("empty")
			}
		case "SigCgt":
			st.Caught, err = parseMask(val)
		case "SigIgn":
			st.Ignored, err = parseMask(val)
		case "SigBlk":
			st.Block, err = parseMask(val)
		default:
			continue
		}
		if err != nil {
			return status{}, fmt.Errorf("%s: %q: %w", key, val, err)
		}
		seen[key] = true
	}
	for _, k := range []string{"State", "PPid", "NSpid", "SigCgt", "SigIgn", "SigBlk"} {
		if !seen[k] {
			return status{}, fmt.Errorf("no %s line", k)
		}
	}
	return st, nil
}

// parseMask parses a signal mask as /proc prints it: 16 hex digits.
func parseMask(s string) (SignalSet, error) {
	if len(s) == 0 || len(s) > 16 {
		return 0, errors.New("want up to 16 hex digits")
	}
	n, err := strconv.ParseUint(s, 16, 64)
	return SignalSet(n), err
}

// procRoot is where the probe reads processes (tests point it elsewhere).
var procRoot = "/proc"

// readStatus reads process pid's status.
func readStatus(pid int) (status, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/status", procRoot, pid))
	if err != nil {
		return status{}, err
	}
	st, err := parseStatus(b)
	if err != nil {
		return status{}, fmt.Errorf("%s/%d/status: %w", procRoot, pid, err)
	}
	return st, nil
}

// parentOf returns the parent PID from the text of a /proc/PID/stat,
// whose second field (the command, in parentheses) may hold anything.
func parentOf(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// children lists the processes whose parent is pid, in ascending order.
func children(pid int) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, n))
		if err != nil {
			continue // gone meanwhile
		}
		if pp, ok := parentOf(b); ok && pp == pid {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// fileID identifies a file: what /proc/PID/exe is, compared with the
// files the probe installed.
type fileID struct{ dev, ino uint64 }

// statID identifies the file at path, following links (so /proc/PID/exe
// gives the executable, in whatever mount namespace it is).
func statID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

// exeID identifies what process pid runs.
func exeID(pid int) (fileID, error) {
	return statID(fmt.Sprintf("%s/%d/exe", procRoot, pid))
}
