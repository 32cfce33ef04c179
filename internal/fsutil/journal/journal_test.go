package journal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/testbed/loopfs"
)

// die simulates the death of j's run: the lock goes with the descriptor,
// the journal stays.
func die(t *testing.T, j *Journal) {
	t.Helper()
	if err := j.f.Close(); err != nil {
		t.Fatal(err)
	}
	j.done = true
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// run makes, in root, what a machine pull makes: a staging dir with
// content, a parent dir, a rename of the staging dir into place and a
// link to it, stopping after n of those steps (-1: all).
func run(t *testing.T, j *Journal, root string, n int) (final string) {
	t.Helper()
	final = filepath.Join(root, "machines", "m")
	steps := []func() error{
		func() error {
			stage, err := j.MkdirUnique(filepath.Join(root, "machines"), ".m.mbctl-staging-")
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(stage, "file"), []byte("x"), 0o644)
		},
		func() error {
			p := filepath.Join(root, "custom")
			if err := j.Log(Record{Op: OpParent, Path: p}); err != nil {
				return err
			}
			return os.Mkdir(p, 0o755)
		},
		func() error {
			var stage string
			for _, r := range j.records {
				if r.Op == OpDir {
					stage = r.Path
				}
			}
			if err := j.Log(Record{Op: OpRename, From: stage, Path: final}); err != nil {
				return err
			}
			return os.Rename(stage, final)
		},
		func() error {
			link := filepath.Join(root, "links", "m")
			if err := j.Log(Record{Op: OpLink, Path: link, Target: final}); err != nil {
				return err
			}
			return os.Symlink(final, link)
		},
	}
	for i, s := range steps {
		if n >= 0 && i >= n {
			break
		}
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	return final
}

func TestCommitKeepsRollbackTakesBack(t *testing.T) {
	root := t.TempDir()
	mkdir(t, filepath.Join(root, "machines"))
	mkdir(t, filepath.Join(root, "links"))
	jdir := filepath.Join(root, "journals")

	j, err := Begin(jdir, "test commit")
	if err != nil {
		t.Fatal(err)
	}
	final := run(t, j, root, -1)
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(final, "file")) || !exists(filepath.Join(root, "links/m")) {
		t.Error("commit lost what the run made")
	}
	if ents, _ := os.ReadDir(jdir); len(ents) != 0 {
		t.Errorf("journal left after commit: %v", ents)
	}

	root = t.TempDir()
	mkdir(t, filepath.Join(root, "machines"))
	mkdir(t, filepath.Join(root, "links"))
	j, err = Begin(jdir, "test rollback")
	if err != nil {
		t.Fatal(err)
	}
	run(t, j, root, -1)
	if err := j.Rollback(); err != nil {
		t.Fatal(err)
	}
	assertTakenBack(t, root, jdir)
}

func assertTakenBack(t *testing.T, root, jdir string) {
	t.Helper()
	for _, d := range []string{"machines", "links"} {
		if ents, _ := os.ReadDir(filepath.Join(root, d)); len(ents) != 0 {
			t.Errorf("%s still holds %v", d, ents)
		}
	}
	if exists(filepath.Join(root, "custom")) {
		t.Error("the parent dir the run made is still there")
	}
	if ents, _ := os.ReadDir(jdir); len(ents) != 0 {
		t.Errorf("journal left: %v", ents)
	}
}

// A run that dies after any step is taken back by Recover, and a live one
// is left alone.
func TestRecoverAfterDeathAtEveryStep(t *testing.T) {
	for n := 0; n <= 4; n++ {
		root := t.TempDir()
		mkdir(t, filepath.Join(root, "machines"))
		mkdir(t, filepath.Join(root, "links"))
		jdir := filepath.Join(root, "journals")

		live, err := Begin(jdir, "alive")
		if err != nil {
			t.Fatal(err)
		}
		liveDir, err := live.MkdirUnique(filepath.Join(root, "machines"), ".other.mbctl-staging-")
		if err != nil {
			t.Fatal(err)
		}
		j, err := Begin(jdir, "machines pull m")
		if err != nil {
			t.Fatal(err)
		}
		run(t, j, root, n)
		die(t, j)

		paths, err := Live(jdir)
		if err != nil || !paths[liveDir] {
			t.Fatalf("Live = %v, %v; want it to name %s", paths, err, liveDir)
		}
		dead, err := Recover(jdir, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || dead[0].What != "machines pull m" || dead[0].Err != nil {
			t.Fatalf("after %d steps: Recover = %+v", n, dead)
		}
		if !exists(liveDir) {
			t.Fatalf("Recover removed the live run's %s", liveDir)
		}
		if err := live.Rollback(); err != nil {
			t.Fatal(err)
		}
		assertTakenBack(t, root, jdir)
	}
}

// A parent dir another run moved into, and a name that was taken, are not
// taken back.
func TestRollbackLeavesWhatIsNotOurs(t *testing.T) {
	root := t.TempDir()
	parent := filepath.Join(root, "shared")
	taken := filepath.Join(root, "taken")
	mkdir(t, taken)
	writeFile := func(p string) {
		if err := os.WriteFile(p, []byte("other"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j, err := Begin(filepath.Join(root, "journals"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Log(Record{Op: OpParent, Path: parent}); err != nil {
		t.Fatal(err)
	}
	mkdir(t, parent)
	writeFile(filepath.Join(parent, "someone-elses"))
	// A rename that failed: the target was someone else's.
	stage, err := j.MkdirUnique(root, ".stage-")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Log(Record{Op: OpRename, From: stage, Path: taken}); err != nil {
		t.Fatal(err)
	}
	// A link that is someone else's by now.
	link := filepath.Join(root, "link")
	if err := j.Log(Record{Op: OpLink, Path: link, Target: "/ours"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/theirs", link); err != nil {
		t.Fatal(err)
	}
	if err := j.Rollback(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(parent, "someone-elses"), taken, link} {
		if !exists(p) {
			t.Errorf("rollback removed %s, which was not the run's", p)
		}
	}
	if exists(stage) {
		t.Errorf("rollback left the run's own %s", stage)
	}
}

func TestTornLastLineIgnored(t *testing.T) {
	root := t.TempDir()
	jdir := filepath.Join(root, "journals")
	j, err := Begin(jdir, "torn")
	if err != nil {
		t.Fatal(err)
	}
	d, err := j.MkdirUnique(root, ".stage-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.f.WriteString(`{"op":"dir","path":"/etc/pa`); err != nil {
		t.Fatal(err)
	}
	die(t, j)
	dead, err := Recover(jdir, false)
	if err != nil || len(dead) != 1 || dead[0].Err != nil {
		t.Fatalf("Recover = %+v, %v", dead, err)
	}
	if exists(d) {
		t.Errorf("%s not taken back", d)
	}
	if !exists("/etc/passwd") {
		t.Fatal("the torn record was acted on")
	}
}

// A real SIGKILL: the kernel drops the lock of a killed process.
func TestRecoverAfterSIGKILL(t *testing.T) {
	if dir := os.Getenv("JOURNAL_TEST_CHILD"); dir != "" {
		j, err := Begin(filepath.Join(dir, "journals"), "child")
		if err != nil {
			os.Exit(3)
		}
		if _, err := j.MkdirUnique(dir, ".stage-"); err != nil {
			os.Exit(4)
		}
		os.Stdout.WriteString("ready\n")
		select {}
	}
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecoverAfterSIGKILL$")
	cmd.Env = append(os.Environ(), "JOURNAL_TEST_CHILD="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf), "ready") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", buf, err)
	}
	if dead, err := Recover(filepath.Join(root, "journals"), false); err != nil || len(dead) != 0 {
		t.Errorf("Recover while the child lives = %+v, %v; want nothing", dead, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	dead, err := Recover(filepath.Join(root, "journals"), false)
	if err != nil || len(dead) != 1 || dead[0].What != "child" {
		t.Fatalf("Recover after SIGKILL = %+v, %v", dead, err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, ".stage-*")); len(m) != 0 {
		t.Errorf("left %v", m)
	}
}

// TestMoveAndExchangeRollBack kills a run that moves and swaps a machine's
// existing files after each of its steps: Recover always gives back the
// state before the run.
//
// On btrfs the trees are subvolumes, whose root dirs all are inode 256: a
// swap that was recorded but never done must still be told from one that
// was.
func TestMoveAndExchangeRollBack(t *testing.T) {
	t.Run("dirs", func(t *testing.T) {
		testMoveAndExchangeRollBack(t, t.TempDir, func(p string) error { return os.Mkdir(p, 0o755) })
	})
	t.Run("btrfs", func(t *testing.T) {
		mnt := loopfs.MountT(t, "btrfs", 256<<20)
		n := 0
		root := func() string {
			n++
			d := filepath.Join(mnt, fmt.Sprint(n))
			mkdir(t, d)
			return d
		}
		testMoveAndExchangeRollBack(t, root, btrfs.Create)
	})
}

func testMoveAndExchangeRollBack(t *testing.T, newRoot func() string, makeTree func(string) error) {
	for n := 0; n <= 3; n++ {
		root := newRoot()
		cur, next, prev := filepath.Join(root, "m"), filepath.Join(root, ".m.next"), filepath.Join(root, ".m.prev")
		old := filepath.Join(root, ".m.old")
		for p, content := range map[string]string{cur: "current", next: "next", prev: "previous"} {
			if err := makeTree(p); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, "id"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dir := filepath.Join(root, "journals")
		j, err := Begin(dir, "upgrade m")
		if err != nil {
			t.Fatal(err)
		}
		steps := []func() error{
			func() error { return j.Move(prev, old) },     // the old rollback point aside
			func() error { return j.Exchange(next, cur) }, // the new tree in place
			func() error { return j.Move(next, prev) },    // the replaced tree is the rollback point
		}
		for _, s := range steps[:n] {
			if err := s(); err != nil {
				t.Fatal(err)
			}
		}
		if n == 1 {
			// Recorded, never done: the run died between the log and the swap.
			var st unix.Stat_t
			if err := unix.Lstat(next, &st); err != nil {
				t.Fatal(err)
			}
			if err := j.Log(Record{Op: OpExchange, From: next, Path: cur, Ino: st.Ino, Dev: st.Dev}); err != nil {
				t.Fatal(err)
			}
		}
		die(t, j)
		if _, err := Recover(dir, false); err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]string{cur: "current", next: "next", prev: "previous"} {
			if got, err := os.ReadFile(filepath.Join(p, "id")); err != nil || string(got) != want {
				t.Errorf("killed after %d steps: %s holds %q (%v), want %q", n, p, got, err, want)
			}
		}
		if exists(old) {
			t.Errorf("killed after %d steps: %s left", n, old)
		}
	}
}

// TestCreateUniqueRollsBackAHalfEntry: what a failing create made goes
// with the rollback; a name someone else has is never touched.
func TestCreateUniqueRollsBackAHalfEntry(t *testing.T) {
	root := t.TempDir()
	j, err := Begin(filepath.Join(root, "journals"), "test")
	if err != nil {
		t.Fatal(err)
	}
	var half string
	_, err = j.CreateUnique(root, ".x-", func(p string) error {
		half = p
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(p, "part"), nil, 0o600); err != nil {
			return err
		}
		return syscall.EIO
	})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("CreateUnique = %v, want EIO", err)
	}
	taken := filepath.Join(root, "theirs")
	mkdir(t, taken)
	tries := 0
	if _, err := j.CreateUnique(root, ".y-", func(p string) error {
		if tries++; tries == 1 {
			return &os.PathError{Op: "mkdir", Path: taken, Err: syscall.EEXIST}
		}
		return os.Mkdir(p, 0o700)
	}); err != nil {
		t.Fatal(err)
	}
	if err := j.Rollback(); err != nil {
		t.Fatal(err)
	}
	if exists(half) {
		t.Errorf("the half entry %s stayed", half)
	}
	if !exists(taken) {
		t.Error("someone else's dir was removed")
	}
}
