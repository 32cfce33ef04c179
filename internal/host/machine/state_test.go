package machine

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/host/config"
)

// fakeProc builds a /proc with the given processes: pid → (ppid, argv).
func fakeProc(t *testing.T, procs map[int]struct {
	ppid int
	argv []string
}) string {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		comm := "some (odd) name"
		if len(p.argv) > 0 && filepath.Base(p.argv[0]) == "systemd-nspawn" {
			comm = "systemd-nspawn"
		}
		stat := strconv.Itoa(pid) + " (" + comm + ") S " + strconv.Itoa(p.ppid) + " 1 1 0\n"
		cmdline := strings.Join(p.argv, "\x00") + "\x00"
		if len(p.argv) == 0 {
			cmdline = ""
		}
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cmdline"), []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestProbe(t *testing.T) {
	root := t.TempDir()
	dirs := config.Paths{Machines: filepath.Join(root, "m"), Configs: filepath.Join(root, "c"),
		Storage: filepath.Join(root, "s"), Nspawn: filepath.Join(root, "n"), Machinectl: filepath.Join(root, "l")}
	web := PathsFor(dirs, "web")
	if err := os.MkdirAll(web.Rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirs.Machinectl, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(web.Rootfs, web.ImageLink); err != nil {
		t.Fatal(err)
	}
	type proc = struct {
		ppid int
		argv []string
	}
	tests := []struct {
		name     string
		procs    map[int]proc
		machined string // state file content for "web"
		want     State
	}{
		{name: "nothing runs", procs: map[int]proc{1: {0, []string{"/sbin/init"}}}},
		{
			name: "nspawn -M web with its child",
			procs: map[int]proc{
				100: {1, []string{"/usr/bin/systemd-nspawn", "--quiet", "--register=no", "-M", "web", "-D", "/elsewhere"}},
				102: {100, []string{"/man8s-init/man8s-init"}},
				101: {100, []string{"/usr/lib/systemd/systemd-nspawn-stub"}},
			},
			want: State{Running: true, Nspawn: 100, Leader: 101, Via: "process"},
		},
		{
			name: "--machine= form, no child yet",
			procs: map[int]proc{
				7: {1, []string{"systemd-nspawn", "--bind", "/a:/b", "--machine=web"}},
			},
			want: State{Running: true, Nspawn: 7, Via: "process"},
		},
		{
			name: "directory through the machinectl link, no -M",
			procs: map[int]proc{
				9:  {1, []string{"systemd-nspawn", "-D", web.ImageLink}},
				10: {9, []string{"sh"}},
			},
			want: State{Running: true, Nspawn: 9, Leader: 10, Via: "process"},
		},
		{
			name: "another machine; -M after -- belongs to the command",
			procs: map[int]proc{
				9: {1, []string{"systemd-nspawn", "-M", "db", "--", "prog", "-M", "web"}},
			},
		},
		{
			name:     "machined's leader",
			procs:    map[int]proc{42: {1, []string{"sh"}}},
			machined: "# This is private data. Do not parse.\nNAME=web\nLEADER=42\n",
			want:     State{Running: true, Leader: 42, Via: "machined"},
		},
		{
			name:     "machined's stale file (leader gone) falls back to processes",
			procs:    map[int]proc{43: {1, []string{"sh"}}},
			machined: "LEADER=42\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr := Prober{Proc: fakeProc(t, tt.procs), MachinedDir: t.TempDir()}
			if tt.machined != "" {
				if err := os.WriteFile(filepath.Join(pr.MachinedDir, "web"), []byte(tt.machined), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := pr.Probe(web)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Probe = %+v, want %+v", got, tt.want)
			}
			all, err := pr.ProbeAll([]Paths{web})
			if err != nil || all[0] != tt.want {
				t.Errorf("ProbeAll = %+v, %v; want %+v", all, err, tt.want)
			}
		})
	}
}

func TestReadStat(t *testing.T) {
	for _, tt := range []struct {
		stat string
		comm string
		ppid int
		ok   bool
	}{
		{"100 (systemd-nspawn) S 1 100 100 0\n", "systemd-nspawn", 1, true},
		{"7 (a) b) (c) R 42 7 7 0\n", "a) b) (c", 42, true},
		{"7 () S 3 7 7\n", "", 3, true},
		{"7 (x) S\n", "", 0, false},
		{"garbage", "", 0, false},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(tt.stat), 0o644); err != nil {
			t.Fatal(err)
		}
		comm, ppid, ok := readStat(dir)
		if ok != tt.ok || (ok && (comm != tt.comm || ppid != tt.ppid)) {
			t.Errorf("readStat(%q) = %q, %d, %v; want %q, %d, %v", tt.stat, comm, ppid, ok, tt.comm, tt.ppid, tt.ok)
		}
	}
	if _, _, ok := readStat(filepath.Join(t.TempDir(), "gone")); ok {
		t.Error("readStat of a missing process: ok")
	}
}

// TestMatchSharedRoot: strict machines' rootfs all link to one image root;
// one of them running is not another one running.
func TestMatchSharedRoot(t *testing.T) {
	root := t.TempDir()
	dirs := config.Paths{Machines: filepath.Join(root, "m"), Configs: filepath.Join(root, "c")}
	shared := filepath.Join(root, "images/sha256-ab")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirs.Machines, 0o755); err != nil {
		t.Fatal(err)
	}
	a, b := PathsFor(dirs, "a"), PathsFor(dirs, "b")
	for _, p := range []Paths{a, b} {
		if err := os.Symlink(shared, p.Rootfs); err != nil {
			t.Fatal(err)
		}
	}
	procs := []nspawnProc{{pid: 5, machine: "a", directory: shared}}
	var pr Prober
	if st := pr.match(procs, a); !st.Running {
		t.Error("a runs, but is not found")
	}
	if st := pr.match(procs, b); st.Running {
		t.Error("b counted as running because a runs on the same shared root")
	}
}
