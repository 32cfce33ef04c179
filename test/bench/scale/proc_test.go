package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeProc writes a proc dir: each process's stat line and, when rss is
// not negative, its smaps_rollup.
func fakeProc(t *testing.T, procs []fakeProcess) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		dir := filepath.Join(root, fmt.Sprint(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (%s) S %d %d 0 0 -1 4194560 0 0\n", p.pid, p.comm, p.ppid, p.pid)
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if p.rss < 0 {
			continue // ended: no smaps_rollup
		}
		rollup := fmt.Sprintf("55d0c0000000-7ffc00000000 ---p 00000000 00:00 0                          [rollup]\nRss:            %5d kB\nPss:            %5d kB\nPss_Anon:          10 kB\nShared_Clean:      40 kB\n", p.rss, p.pss)
		if err := os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(rollup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	meminfo := "MemTotal:       24684000 kB\nMemAvailable:   24029588 kB\nSUnreclaim:        55204 kB\nKernelStack:        2176 kB\nPageTables:         2044 kB\nSecPageTables:         0 kB\nPercpu:              744 kB\n"
	if err := os.WriteFile(filepath.Join(root, "meminfo"), []byte(meminfo), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil { // not a PID
		t.Fatal(err)
	}
	return root
}

type fakeProcess struct {
	pid, ppid int
	comm      string
	rss, pss  int64
}

// A machine as `mbctl machines run` makes it: mbctl, its systemd-nspawn,
// nspawn's container init, man8s-init and the app; beside it another
// machine and unrelated processes.
var machineProcs = []fakeProcess{
	{1, 0, "systemd", 100, 100},
	{100, 1, "mbctl", 20000, 6000},
	{120, 100, "systemd-nspawn", 9000, 3000},
	{130, 120, "systemd-nspawn", 1000, 200},
	{131, 130, "man8s-init", 8000, 2500},
	{140, 131, "httpd", 900, 300},
	{141, 131, "sh (x) y", 500, 100}, // a name with spaces and parentheses
	{142, 131, "sleep", -1, 0},       // ended before its smaps_rollup was read
	{200, 1, "mbctl", 20000, 6000},
	{220, 200, "systemd-nspawn", 9000, 3000},
	{300, 1, "bash", 4000, 1000},
}

func TestSubtreeAndMemory(t *testing.T) {
	tab, err := readProcTable(fakeProc(t, machineProcs))
	if err != nil {
		t.Fatal(err)
	}
	if got := tab.comm[141]; got != "sh (x) y" {
		t.Errorf("comm of 141 = %q", got)
	}
	if got, want := tab.subtree(100), []int{100, 120, 130, 131, 140, 141, 142}; !slices.Equal(got, want) {
		t.Errorf("subtree(100) = %v, want %v", got, want)
	}
	if got := tab.subtree(999); got != nil {
		t.Errorf("subtree of a missing PID = %v", got)
	}
	nspawn, ok := tab.find(100, "systemd-nspawn")
	if !ok || nspawn != 120 {
		t.Fatalf("find(100, systemd-nspawn) = %d, %v; want the outer one, 120", nspawn, ok)
	}
	if _, ok := tab.find(300, "systemd-nspawn"); ok {
		t.Error("found a systemd-nspawn under bash")
	}
	got, err := tab.treeMemory(nspawn)
	if err != nil {
		t.Fatal(err)
	}
	if want := (memory{RSS: 9000 + 1000 + 8000 + 900 + 500, PSS: 3000 + 200 + 2500 + 300 + 100, Procs: 5}); got != want {
		t.Errorf("treeMemory(120) = %+v, want %+v", got, want)
	}
}

func TestParseRollupErrors(t *testing.T) {
	for _, in := range []string{"", "Rss: 10 kB\n", "Rss: x kB\nPss: 1 kB\n"} {
		if m, err := parseRollup(strings.NewReader(in)); err == nil {
			t.Errorf("parseRollup(%q) = %+v, want an error", in, m)
		}
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		comm string
		ppid int
		bad  bool
	}{
		{in: "7 (a) b) R 3 7 0", comm: "a) b", ppid: 3},
		{in: "7 () S 1", comm: "", ppid: 1},
		{in: "7 httpd S 1", bad: true},
		{in: "7 (httpd) S", bad: true},
		{in: "7 (httpd) S x", bad: true},
	} {
		comm, ppid, err := parseStat([]byte(tc.in))
		if (err != nil) != tc.bad || comm != tc.comm || ppid != tc.ppid {
			t.Errorf("parseStat(%q) = %q, %d, %v", tc.in, comm, ppid, err)
		}
	}
}

func TestReadMeminfo(t *testing.T) {
	root := fakeProc(t, nil)
	got, err := readMeminfo(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := (hostMemory{Available: 24029588, Kernel: 55204 + 2176 + 2044 + 744}); got != want {
		t.Errorf("readMeminfo = %+v, want %+v", got, want)
	}
	if err := os.WriteFile(filepath.Join(root, "meminfo"), []byte("MemAvailable: 1 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readMeminfo(root); err == nil {
		t.Error("readMeminfo without the kernel lines: no error")
	}
}

func TestDeltas(t *testing.T) {
	if got := deltas(100, []int64{90, 70, 75}, true); !slices.Equal(got, []int64{10, 20, -5}) {
		t.Errorf("deltas of a drop = %v", got)
	}
	if got := deltas(0, []int64{16, 21, 25}, false); !slices.Equal(got, []int64{16, 5, 4}) {
		t.Errorf("deltas = %v", got)
	}
}
