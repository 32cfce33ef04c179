package machine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// State says whether a machine runs and, if it does, which process is its
// leader (the container's PID 1, as seen from the host).
type State struct {
	Running bool `json:"running"`
	// Leader is the machine's PID 1 on the host; Nspawn the systemd-nspawn
	// process that runs it (0 when machined reported the machine).
	Leader int `json:"leader,omitempty"`
	Nspawn int `json:"nspawn_pid,omitempty"`
	// Via says how the state was found: "machined" or "process".
	Via string `json:"via,omitempty"`
}

// String is "running" or "stopped".
func (s State) String() string {
	if s.Running {
		return "running"
	}
	return "stopped"
}

// Prober finds running machines. It looks at systemd-machined's state
// files first (machines started by systemd or registered nspawn), then at
// the systemd-nspawn processes (nspawn with --register=no, as on hosts
// without systemd). This is the one place that decides whether a machine
// runs; list, show, remove and shell all use it.
type Prober struct {
	// MachinedDir is machined's state dir (default /run/systemd/machines).
	MachinedDir string
	// Proc is the proc file system (default /proc).
	Proc string
}

func (pr Prober) machinedDir() string {
	if pr.MachinedDir != "" {
		return pr.MachinedDir
	}
	return "/run/systemd/machines"
}

func (pr Prober) proc() string {
	if pr.Proc != "" {
		return pr.Proc
	}
	return "/proc"
}

// Probe returns the state of the machine with paths p.
func (pr Prober) Probe(p Paths) (State, error) {
	st, err := pr.machined(p.Name)
	if err != nil || st.Running {
		return st, err
	}
	procs, err := pr.nspawns()
	if err != nil {
		return State{}, err
	}
	return pr.match(procs, p), nil
}

// ProbeAll returns the state of every machine in ps, scanning the
// processes once.
func (pr Prober) ProbeAll(ps []Paths) ([]State, error) {
	procs, err := pr.nspawns()
	if err != nil {
		return nil, err
	}
	out := make([]State, len(ps))
	for i, p := range ps {
		st, err := pr.machined(p.Name)
		if err != nil {
			return nil, err
		}
		if !st.Running {
			st = pr.match(procs, p)
		}
		out[i] = st
	}
	return out, nil
}

// machined reads machined's state file of name (LEADER=pid).
func (pr Prober) machined(name string) (State, error) {
	data, err := os.ReadFile(filepath.Join(pr.machinedDir(), name))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading machined's state of %s: %w", name, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "LEADER="); ok {
			pid, err := strconv.Atoi(v)
			if err == nil && pid > 0 && pr.alive(pid) {
				return State{Running: true, Leader: pid, Via: "machined"}, nil
			}
		}
	}
	return State{}, nil
}

func (pr Prober) alive(pid int) bool {
	_, err := os.Stat(filepath.Join(pr.proc(), strconv.Itoa(pid)))
	return err == nil
}

// nspawnProc is a running systemd-nspawn process.
type nspawnProc struct {
	pid       int
	machine   string // -M/--machine, or the directory's base name
	directory string // -D/--directory, symlinks resolved
	children  []int
}

// nspawns lists the systemd-nspawn processes with their children.
func (pr Prober) nspawns() ([]nspawnProc, error) {
	ents, err := os.ReadDir(pr.proc())
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", pr.proc(), err)
	}
	var procs []nspawnProc
	parents := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(pr.proc(), e.Name())
		comm, ppid, ok := readStat(dir)
		if !ok {
			continue // gone
		}
		parents[pid] = ppid
		if comm != "systemd-nspawn" {
			continue // the cmdline of most processes need not be read
		}
		raw, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue // gone, or a kernel thread
		}
		argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		if filepath.Base(argv[0]) != "systemd-nspawn" {
			continue
		}
		np := parseNspawnArgs(argv[1:])
		np.pid = pid
		procs = append(procs, np)
	}
	for i := range procs {
		for pid, ppid := range parents {
			if ppid == procs[i].pid {
				procs[i].children = append(procs[i].children, pid)
			}
		}
	}
	return procs, nil
}

// readStat reads the command name (at most 15 bytes of the executable's
// name, which "systemd-nspawn" fits) and the parent PID from /proc/PID/stat.
func readStat(dir string) (comm string, ppid int, ok bool) {
	raw, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	open, end := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	fields := strings.Fields(string(raw[end+1:]))
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return string(raw[open+1 : end]), ppid, err == nil
}

// parseNspawnArgs picks the machine name and directory out of
// systemd-nspawn's options. Without -M, nspawn names the machine after the
// directory. Options with a separate value ("--bind /a") make the command
// to run indistinguishable from option values, so every argument before
// "--" is looked at.
func parseNspawnArgs(args []string) nspawnProc {
	var np nspawnProc
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case a == "--":
			i = len(args)
		case a == "-M" || a == "--machine":
			np.machine = next()
		case strings.HasPrefix(a, "--machine="):
			np.machine = strings.TrimPrefix(a, "--machine=")
		case strings.HasPrefix(a, "-M"):
			np.machine = a[2:]
		case a == "-D" || a == "--directory":
			np.directory = next()
		case strings.HasPrefix(a, "--directory="):
			np.directory = strings.TrimPrefix(a, "--directory=")
		case strings.HasPrefix(a, "-D"):
			np.directory = a[2:]
		}
	}
	if np.directory != "" {
		if real, err := filepath.EvalSymlinks(np.directory); err == nil {
			np.directory = real
		}
		if np.machine == "" {
			np.machine = filepath.Base(np.directory)
		}
	}
	return np
}

// match finds the nspawn process that runs p: same machine name, or the
// same root directory. A rootfs that is a link (a strict machine's, to
// the image root every strict machine of the image shares) is matched by
// name only.
func (pr Prober) match(procs []nspawnProc, p Paths) State {
	rootfs := p.Rootfs
	if fi, err := os.Lstat(rootfs); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		rootfs = ""
	}
	if real, err := filepath.EvalSymlinks(rootfs); err == nil && rootfs != "" {
		rootfs = real
	}
	for _, np := range procs {
		if np.machine != p.Name && (np.directory == "" || rootfs == "" || np.directory != rootfs) {
			continue
		}
		st := State{Running: true, Nspawn: np.pid, Via: "process"}
		if len(np.children) > 0 {
			st.Leader = np.children[0]
			for _, c := range np.children {
				st.Leader = min(st.Leader, c)
			}
		}
		return st
	}
	return State{}
}
