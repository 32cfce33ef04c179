package probe

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/testbed/ci"
)

func set(sigs ...syscall.Signal) SignalSet {
	var s SignalSet
	for _, sig := range sigs {
		s |= 1 << (sig - 1)
	}
	return s
}

// procStatus is a /proc/PID/status as Linux 6 writes it, with the masks
// and the namespace PIDs given.
func procStatus(state, nspid, blk, ign, cgt string) string {
	return "Name:\tsh\nUmask:\t0022\nState:\t" + state + "\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t4200\n" +
		"TracerPid:\t0\nNSpid:\t" + nspid + "\nNSpgid:\t4242\t1\nThreads:\t1\nSigQ:\t0/96369\n" +
		"SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t" + blk + "\nSigIgn:\t" + ign + "\nSigCgt:\t" + cgt +
		"\nCapInh:\t0000000000000000\n"
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name string
		text string
		want status
		err  string
	}{
		{"busybox sh trapping TERM, PID 1 of its namespace",
			procStatus("S (sleeping)", "4242\t1", "0000000000000000", "0000000000000004", "0000000000014002"),
			status{State: 'S', PPid: 4200, NSpid: []int{4242, 1}, Ignored: set(syscall.SIGQUIT), Caught: set(syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)}, ""},
		{"tini ignoring TTIN and TTOU, nested namespaces",
			procStatus("S (sleeping)", "4242\t77\t1", "0000000000000000", "0000000000300000", "0000000000000000"),
			status{State: 'S', PPid: 4200, NSpid: []int{4242, 77, 1}, Ignored: set(syscall.SIGTTIN, syscall.SIGTTOU)}, ""},
		{"catatonit blocking everything for its signalfd",
			procStatus("S (sleeping)", "4242\t1", "fffffffe7ffbfeff", "0000000000000000", "0000000000000000"),
			status{State: 'S', PPid: 4200, NSpid: []int{4242, 1}, Block: 0xfffffffe7ffbfeff}, ""},
		{"zombie on the host", procStatus("Z (zombie)", "4242", "0000000000000000", "0000000000000000", "0000000000000000"),
			status{State: 'Z', PPid: 4200, NSpid: []int{4242}}, ""},
		{"realtime signals caught", procStatus("R (running)", "4242\t1", "0", "0", "0000002000000000"),
			status{State: 'R', PPid: 4200, NSpid: []int{4242, 1}, Caught: set(38)}, ""},
		{"no SigCgt", strings.Replace(procStatus("S", "1", "0", "0", "0"), "SigCgt:\t0\n", "", 1), status{}, "no SigCgt line"},
		{"mask not hex", procStatus("S", "1", "0", "0", "zz"), status{}, `SigCgt: "zz"`},
		{"mask too long", procStatus("S", "1", "0", "00000000000000000", "0"), status{}, "SigIgn"},
		{"NSpid not numbers", procStatus("S", "1 x", "0", "0", "0"), status{}, "NSpid"},
		{"empty", "", status{}, "no State line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus([]byte(tt.text))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseStatus = %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(status{})); diff != "" {
				t.Errorf("parseStatus (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSignalSetNames(t *testing.T) {
	tests := []struct {
		set  SignalSet
		want []string
	}{
		{0, []string{}},
		{0x14002, []string{"SIGINT", "SIGTERM", "SIGCHLD"}},
		{set(syscall.SIGHUP, 34, 37, 64), []string{"SIGHUP", "SIGRTMIN", "SIGRTMIN+3", "SIGRTMIN+30"}},
	}
	for _, tt := range tests {
		if got := tt.set.Names(); !slices.Equal(got, tt.want) {
			t.Errorf("%#x.Names() = %q, want %q", uint64(tt.set), got, tt.want)
		}
	}
	if set(syscall.SIGTERM).Has(0) || set(syscall.SIGTERM).Has(65) || !set(syscall.SIGTERM).Has(syscall.SIGTERM) {
		t.Error("Has is wrong at the edges")
	}
}

func TestParentOf(t *testing.T) {
	for stat, want := range map[string]int{
		"4242 (sh) S 4200 4242 4242 0 -1":           4200,
		"4242 (a) b (c)) S 17 4242 4242 0 -1":       17,
		"4242 (sleep 1000) Z 1 4242 4242 0 -1 4194": 1,
		"4242 (sh": 0,
	} {
		got, ok := parentOf([]byte(stat))
		if got != want || ok != (want != 0) {
			t.Errorf("parentOf(%q) = %d, %v; want %d", stat, got, ok, want)
		}
	}
}

// A fake /proc: children and statuses come from files the test writes.
func TestChildrenAndStatusFromProc(t *testing.T) {
	dir := t.TempDir()
	old := procRoot
	procRoot = dir
	t.Cleanup(func() { procRoot = old })
	for pid, stat := range map[string]string{
		"100":  "100 (systemd-nspawn) S 1 100 100 0 -1",
		"101":  "101 (tini) S 100 101 101 0 -1",
		"102":  "102 (sleep) Z 101 101 101 0 -1",
		"103":  "103 (sleep) S 101 101 101 0 -1",
		"self": "x",
	} {
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pid, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "101", "status"), []byte(procStatus("S (sleeping)", "101\t1", "0", "0", "4000")), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := children(101); err != nil || !slices.Equal(got, []int{102, 103}) {
		t.Errorf("children(101) = %v, %v", got, err)
	}
	if got, _ := children(100); !slices.Equal(got, []int{101}) {
		t.Errorf("children(100) = %v", got)
	}
	st, err := readStatus(101)
	if err != nil || st.inOwnNamespaceAs() != 1 || !st.Caught.Has(syscall.SIGTERM) {
		t.Errorf("readStatus(101) = %+v, %v", st, err)
	}
	if _, err := readStatus(102); err == nil {
		t.Error("readStatus of a pid without status: no error")
	}
}

func TestFindingsJudgement(t *testing.T) {
	term := syscall.SIGTERM
	reaps := Reap{Tested: true, Reaped: true}
	exitedOn := func(sig syscall.Signal) Stop { return Stop{Sent: true, Signal: sig, Exited: true} }
	tests := []struct {
		name     string
		f        Findings
		verdict  Verdict
		reason   string
		takes    bool // Takes(StopSignal)
		mayTake  bool
		endsAsCh bool // EndsAsChild(StopSignal)
	}{
		{"a shell trapping TERM", Findings{StopSignal: term, Caught: set(term, syscall.SIGCHLD), Reap: reaps, Stop: exitedOn(term)},
			Yes, "it handles SIGTERM and reaps the children it adopts", true, true, true},
		{"tini waiting in sigtimedwait", Findings{StopSignal: term, SigWait: true, Ignored: set(syscall.SIGTTIN), Reap: reaps, Stop: exitedOn(term)},
			Yes, "it handles SIGTERM and reaps", true, true, true},
		{"catatonit blocking for a signalfd", Findings{StopSignal: term, Blocked: set(term, syscall.SIGCHLD), Reap: reaps},
			Yes, "handles SIGTERM", true, true, true},
		{"sleep", Findings{StopSignal: term, Reap: Reap{Tested: true, Zombies: 1}, Stop: Stop{Sent: true, Signal: term}},
			No, "it does not handle SIGTERM: as PID 1 the kernel drops it", false, false, true},
		{"ignores TERM", Findings{StopSignal: term, Ignored: set(term), Caught: set(syscall.SIGCHLD), Reap: reaps, Stop: Stop{Sent: true, Signal: term}},
			No, "does not handle SIGTERM", false, false, false},
		{"handles only its SIGQUIT", Findings{StopSignal: syscall.SIGQUIT, Caught: set(syscall.SIGQUIT), Reap: reaps, Stop: exitedOn(syscall.SIGQUIT)},
			Yes, "it handles SIGQUIT and reaps", true, true, true},
		{"handles neither TERM nor its SIGQUIT", Findings{StopSignal: syscall.SIGQUIT, Reap: reaps, Stop: Stop{Sent: true, Signal: syscall.SIGQUIT}},
			No, "it does not handle SIGTERM or SIGQUIT, its stop signal", false, false, true},
		{"waits for signals but not for its stop signal", Findings{StopSignal: term, SigWait: true, Reap: reaps, Stop: Stop{Sent: true, Signal: term}},
			No, "it waits for signals, but did not exit on SIGTERM", false, true, true},
		{"does not reap", Findings{StopSignal: term, Caught: set(term), Reap: Reap{Tested: true, Zombies: 1}, Stop: exitedOn(term)},
			No, "leaves the children it adopts as zombies", true, true, true},
		{"reaping not tested", Findings{StopSignal: term, Caught: set(term)},
			Unknown, "whether it reaps could not be tested", true, true, true},
		{"exited by itself", Findings{StopSignal: term, Early: &Exit{After: 120 * time.Millisecond, Status: 1}},
			Unknown, "the app exited by itself 120ms after it started with status 1", false, false, true},
		{"stop signal not ending a child", Findings{StopSignal: syscall.SIGWINCH, Caught: set(term), Reap: reaps},
			Yes, "handles SIGTERM", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, why := tt.f.AsPID1()
			if v != tt.verdict || !strings.Contains(why, tt.reason) {
				t.Errorf("AsPID1 = %s, %q; want %s, %q", v, why, tt.verdict, tt.reason)
			}
			sig := tt.f.StopSignal
			if got := tt.f.Takes(sig); got != tt.takes {
				t.Errorf("Takes(%v) = %v", sig, got)
			}
			if got := tt.f.MayTake(sig); got != tt.mayTake {
				t.Errorf("MayTake(%v) = %v", sig, got)
			}
			if got := tt.f.EndsAsChild(sig); got != tt.endsAsCh {
				t.Errorf("EndsAsChild(%v) = %v", sig, got)
			}
		})
	}
}

func TestTexts(t *testing.T) {
	f := Findings{Stop: Stop{Sent: true, Signal: syscall.SIGTERM, Exited: true, After: 12 * time.Millisecond, Status: 143},
		Reap: Reap{Tested: true, Reaped: true, After: 3 * time.Millisecond}}
	if got, want := f.StopText(), "exited 12ms after SIGTERM with status 143"; got != want {
		t.Errorf("StopText = %q, want %q", got, want)
	}
	if got, want := f.ReapText(), "yes: an adopted child was reaped 3ms after it exited"; got != want {
		t.Errorf("ReapText = %q, want %q", got, want)
	}
	f = Findings{Stop: Stop{Sent: true, Signal: syscall.SIGQUIT, After: 3 * time.Second}, Reap: Reap{Tested: true, After: time.Second, Zombies: 2}}
	if got, want := f.StopText(), "did not exit within 3000ms of SIGQUIT"; got != want {
		t.Errorf("StopText = %q, want %q", got, want)
	}
	if got, want := f.ReapText(), "no: an adopted child stayed a zombie for 1000ms (2 zombies at the end)"; got != want {
		t.Errorf("ReapText = %q, want %q", got, want)
	}
}

func TestNspawnArgs(t *testing.T) {
	in := Input{WorkingDir: "/srv", Setenv: []string{"PATH=/bin", "LANG=C.UTF-8"}}
	cmd := []string{"/man8s-init/man8s-init"}
	got := nspawnArgs("systemd-nspawn", "mbctl-probe-70010000", "/s/probe-70010000/root", 0x70010000, machine.HostInit{}, in, cmd)
	want := []string{"systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--settings=no",
		"--machine=mbctl-probe-70010000", "--directory=/s/probe-70010000/root", "--private-network",
		"--private-users=1879113728:65536", "--private-users-ownership=off", "--console=read-only", "--kill-signal=SIGKILL",
		"--resolv-conf=off", "--timezone=off", "--link-journal=no", "--chdir=/srv", "--setenv=PATH=/bin", "--setenv=LANG=C.UTF-8",
		"/man8s-init/man8s-init"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nspawnArgs (-want +got):\n%s", diff)
	}
	// With a system bus nspawn makes its own scope.
	if got := nspawnArgs("n", "m", "/r", 0x70010000, machine.HostInit{Systemd: true, Bus: true}, Input{}, cmd); slices.Contains(got, "--keep-unit") {
		t.Errorf("with a bus: %q", got)
	}
}

func TestWrapper(t *testing.T) {
	r := &run{cfg: Config{Settle: 1500 * time.Millisecond}, haveBusybox: true}
	want := []string{"/man8s-init/busybox", "sh", "-c", "/man8s-init/busybox sleep 1.500 & exec /man8s-init/man8s-init"}
	if got := r.wrapper(); !slices.Equal(got, want) {
		t.Errorf("wrapper = %q, want %q", got, want)
	}
	r.haveBusybox = false
	if got := r.wrapper(); !slices.Equal(got, []string{"/man8s-init/man8s-init"}) {
		t.Errorf("wrapper without busybox = %q", got)
	}
}

// The probe's dir is journaled before it is made and named by its uid
// range; a killed run's dir is taken back by Recover.
func TestClaimDir(t *testing.T) {
	scratch := filepath.Join(t.TempDir(), "scratch")
	jdir := filepath.Join(t.TempDir(), "journals")
	j, err := journal.Begin(jdir, "probe test")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	var dirs []string
	for range 5 {
		dir, base, err := claimDir(Input{Scratch: scratch, Journal: j})
		if err != nil {
			t.Fatal(err)
		}
		if base < baseMin || base >= baseMax || base%uidRange != 0 || seen[base] {
			t.Errorf("base %#x: outside %#x-%#x, unaligned or taken twice", base, baseMin, baseMax)
		}
		seen[base] = true
		if filepath.Base(dir) != machineName(base)[len("mbctl-"):] {
			t.Errorf("dir %s for base %#x", dir, base)
		}
		dirs = append(dirs, dir)
	}
	if err := j.Rollback(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s survived the rollback: %v", d, err)
		}
	}
}

func TestCheck(t *testing.T) {
	ok := Input{Rootfs: "/r", Scratch: "/var/tmp/man8s", Env: []byte("A=1\n")}
	cfg := Config{}
	cfg.Init.Init = "/i"
	if err := check(ok, cfg); err != nil {
		t.Errorf("check: %v", err)
	}
	bad := ok
	bad.Scratch = "/var/tmp/a,b"
	if err := check(bad, cfg); err == nil || !strings.Contains(err.Error(), "overlay mount options") {
		t.Errorf("check of a scratch dir with a comma: %v", err)
	}
	if err := check(ok, Config{}); err == nil {
		t.Error("check without man8s-init: no error")
	}
}

// shiftOwners moves what the probe added into the machine's uid range
// through the merged view, and leaves what is the machine's already.
func TestShiftOwners(t *testing.T) {
	ci.RequireRoot(t, "chown")
	dir := t.TempDir()
	const base = 0x70010000
	for _, p := range []string{"man8s-init/", "man8s-init/man8s-init", "man8env.env", "bin/", "bin/sh"} {
		full := filepath.Join(dir, p)
		var err error
		switch {
		case strings.HasSuffix(p, "/"):
			err = os.Mkdir(full, 0o755)
		case p == "bin/sh":
			err = os.Symlink("/man8s-init/busybox", full)
		default:
			if err = os.WriteFile(full, []byte("x"), 0o755); err == nil {
				err = unix.Chmod(full, 0o4755)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Copied up from the idmapped image: the machine's already.
	if err := os.Lchown(filepath.Join(dir, "bin"), base+0, base+5); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(dir, "man8env.env"), 1000, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "whiteout"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := shiftOwners(dir, dir, base); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string][2]int{
		".": {base, base}, "man8s-init": {base, base}, "man8s-init/man8s-init": {base, base},
		"man8env.env": {base + 1000, base}, "bin": {base, base + 5}, "bin/sh": {base, base}, "whiteout": {0, 0},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatal(err)
		}
		if int(st.Uid) != want[0] || int(st.Gid) != want[1] {
			t.Errorf("%s: %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "man8s-init/man8s-init")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("the setuid bit did not survive the chown: %v %v", fi.Mode(), err)
	}
}

func TestTail(t *testing.T) {
	var tl tail
	for i := range 3000 {
		tl.Write([]byte(strings.Repeat("x", i%7) + "\n"))
	}
	tl.Write([]byte("last line\n"))
	if s := tl.String(); len(s) != tailSize || !strings.HasSuffix(s, "last line\n") {
		t.Errorf("tail keeps %d bytes ending %q", len(s), s[len(s)-12:])
	}
	if ex := tl.excerpt(); strings.Count(ex, "\n") != 8 || !strings.HasSuffix(ex, "last line") {
		t.Errorf("excerpt %q", ex)
	}
}
