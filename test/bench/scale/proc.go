package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// procTable is a snapshot of a proc file system's process table: each
// process's parent and command name (from PID/stat; the kernel here has no
// task/TID/children files).
type procTable struct {
	root   string // "/proc", or a fake one in tests
	parent map[int]int
	comm   map[int]string
}

// readProcTable reads root/[0-9]*/stat. A process that ends while it is
// read is left out.
func readProcTable(root string) (procTable, error) {
	t := procTable{root: root, parent: map[int]int{}, comm: map[int]string{}}
	entries, err := os.ReadDir(root)
	if err != nil {
		return t, fmt.Errorf("reading %s: %w", root, err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		comm, ppid, err := parseStat(b)
		if err != nil {
			return t, fmt.Errorf("%s/%d/stat: %w", root, pid, err)
		}
		t.parent[pid], t.comm[pid] = ppid, comm
	}
	return t, nil
}

// parseStat returns the command name and parent PID of a PID/stat line:
// "PID (COMM) STATE PPID ...". COMM may hold spaces and parentheses; it
// ends at the last ')'.
func parseStat(b []byte) (comm string, ppid int, err error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("no command name in %q", b)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 2 {
		return "", 0, fmt.Errorf("no parent PID in %q", b)
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return "", 0, fmt.Errorf("parent PID %q: %w", f[1], err)
	}
	return string(b[open+1 : end]), ppid, nil
}

// subtree returns pid and all its descendants, pid first, then in
// breadth-first order, each level by PID.
func (t procTable) subtree(pid int) []int {
	children := map[int][]int{}
	for p, pp := range t.parent {
		children[pp] = append(children[pp], p)
	}
	if _, ok := t.parent[pid]; !ok {
		return nil
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		c := children[out[i]]
		slices.Sort(c)
		out = append(out, c...)
	}
	return out
}

// find returns the first process named comm in pid's subtree
// (breadth-first), pid itself included.
func (t procTable) find(pid int, comm string) (int, bool) {
	for _, p := range t.subtree(pid) {
		if t.comm[p] == comm {
			return p, true
		}
	}
	return 0, false
}

// memory is resident memory in KiB, from smaps_rollup.
type memory struct {
	RSS int64 `json:"rss_kib"`
	PSS int64 `json:"pss_kib"`
	// Procs is the number of processes summed.
	Procs int `json:"procs"`
}

func (m memory) add(o memory) memory {
	return memory{RSS: m.RSS + o.RSS, PSS: m.PSS + o.PSS, Procs: m.Procs + o.Procs}
}

// parseRollup reads the Rss: and Pss: lines of a smaps_rollup file.
func parseRollup(r io.Reader) (memory, error) {
	var m memory
	var rss, pss bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "Rss:" && f[0] != "Pss:") {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s %q: %w", f[0], f[1], err)
		}
		if f[0] == "Rss:" {
			m.RSS, rss = v, true
		} else {
			m.PSS, pss = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !rss || !pss {
		return m, errors.New("no Rss: and Pss: lines")
	}
	m.Procs = 1
	return m, nil
}

// treeMemory sums the memory of pid's subtree. A process that ended since
// the table was read is left out.
func (t procTable) treeMemory(pid int) (memory, error) {
	return t.treeMemoryBy(pid, nil)
}

// treeMemoryBy is treeMemory that also adds each process's memory to
// byComm[its command name] when byComm is not nil.
func (t procTable) treeMemoryBy(pid int, byComm map[string]memory) (memory, error) {
	var sum memory
	for _, p := range t.subtree(pid) {
		f, err := os.Open(filepath.Join(t.root, strconv.Itoa(p), "smaps_rollup"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue
		}
		if err != nil {
			return sum, err
		}
		m, err := parseRollup(f)
		f.Close()
		if err != nil {
			if errors.Is(err, syscall.ESRCH) {
				continue
			}
			return sum, fmt.Errorf("smaps_rollup of %d (%s): %w", p, t.comm[p], err)
		}
		sum = sum.add(m)
		if byComm != nil {
			byComm[t.comm[p]] = byComm[t.comm[p]].add(m)
		}
	}
	return sum, nil
}

// hostMemory is what /proc/meminfo says about the whole host, in KiB.
type hostMemory struct {
	// Available is MemAvailable.
	Available int64 `json:"mem_available_kib"`
	// Kernel is what the kernel holds that no process's PSS shows and
	// that reclaim cannot free: SUnreclaim + KernelStack + PageTables +
	// Percpu (network namespaces, veths, cgroups, mounts, page tables).
	Kernel int64 `json:"kernel_kib"`
}

// kernelKeys are the meminfo lines summed into hostMemory.Kernel.
var kernelKeys = []string{"SUnreclaim:", "KernelStack:", "PageTables:", "Percpu:"}

// readMeminfo reads root/meminfo.
func readMeminfo(root string) (hostMemory, error) {
	var h hostMemory
	b, err := os.ReadFile(filepath.Join(root, "meminfo"))
	if err != nil {
		return h, err
	}
	seen := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "MemAvailable:" && !slices.Contains(kernelKeys, f[0])) {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return h, fmt.Errorf("meminfo %s %q: %w", f[0], f[1], err)
		}
		seen++
		if f[0] == "MemAvailable:" {
			h.Available = v
		} else {
			h.Kernel += v
		}
	}
	if seen != 1+len(kernelKeys) {
		return h, fmt.Errorf("meminfo: want MemAvailable and %s", strings.Join(kernelKeys, " "))
	}
	return h, nil
}
