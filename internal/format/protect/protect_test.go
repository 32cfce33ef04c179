package protect

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/tree"
)

// canChown reports whether the test may set arbitrary owners; it fails instead of
// skipping under CI, where the tests must run as root.
func canChown(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() == 0 {
		return true
	}
	if ci.Enabled() {
		t.Fatal("ownership tests need root under CI")
	}
	t.Log("not root: skipping the ownership rows")
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// entry describes one node of a test tree.
type entry struct {
	path     string
	kind     string // dir, file, symlink, hardlink, fifo
	mode     fs.FileMode
	data     string // file content, symlink target or hardlink source
	uid, gid int    // applied when root; 0 means the current user
	xattr    bool
}

func build(t *testing.T, root string, entries []entry, chown bool) {
	t.Helper()
	var dirs []entry
	for _, e := range entries {
		p := filepath.Join(root, e.path)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		switch e.kind {
		case "dir":
			must(t, os.MkdirAll(p, 0o755))
			dirs = append(dirs, e)
		case "file":
			must(t, os.WriteFile(p, []byte(e.data), 0o600))
		case "symlink":
			must(t, os.Symlink(e.data, p))
		case "hardlink":
			must(t, os.Link(filepath.Join(root, e.data), p))
			continue
		case "fifo":
			must(t, unix.Mkfifo(p, 0o600))
		default:
			t.Fatalf("unknown kind %q", e.kind)
		}
		if chown && (e.uid != 0 || e.gid != 0) {
			must(t, os.Lchown(p, e.uid, e.gid))
		}
		if e.kind != "symlink" && e.kind != "dir" {
			must(t, os.Chmod(p, e.mode))
		}
		if e.xattr {
			if err := unix.Lsetxattr(p, "user.man8s", []byte("kept"), 0); err != nil {
				t.Logf("no user xattrs here (%v): the xattr row checks nothing", err)
			}
		}
	}
	// Directory modes last, so that read-only directories could be filled.
	for i := len(dirs) - 1; i >= 0; i-- {
		e := dirs[i]
		p := filepath.Join(root, e.path)
		if chown && (e.uid != 0 || e.gid != 0) {
			must(t, os.Lchown(p, e.uid, e.gid))
		}
		must(t, os.Chmod(p, e.mode))
	}
}

func snapshot(t *testing.T, dir string) map[string]tree.Node {
	t.Helper()
	s, err := tree.Snapshot(dir)
	must(t, err)
	return s
}

func mtimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = time.Unix(st.Mtim.Unix())
		return nil
	}))
	return out
}

func TestProtectRestoreRoundTrip(t *testing.T) {
	chown := canChown(t)
	rootfs := t.TempDir()
	must(t, os.Mkdir(filepath.Join(rootfs, "run"), 0o755))
	must(t, os.Mkdir(filepath.Join(rootfs, "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(rootfs, "tmp"), 0o777|fs.ModeSticky))
	if chown {
		must(t, os.Lchown(filepath.Join(rootfs, "tmp"), 1234, 5678))
	}
	build(t, filepath.Join(rootfs, "run"), []entry{
		{path: "app.pid", kind: "file", mode: 0o644, data: "42\n", xattr: true},
		{path: "owned", kind: "file", mode: 0o640, data: "o", uid: 1234, gid: 5678},
		{path: "lock", kind: "dir", mode: 0o755},
		{path: "lock/subsys", kind: "dir", mode: 0o700, uid: 1234, gid: 5678},
		{path: "nested/a/b/c", kind: "dir", mode: 0o750},
		{path: "nested/a/b/c/deep", kind: "file", mode: 0o600, data: "deep"},
		{path: "readonly", kind: "dir", mode: 0o555},
		{path: "readonly/inside", kind: "file", mode: 0o444, data: "ro"},
		{path: "abs", kind: "symlink", data: "/var/run/elsewhere"},
		{path: "rel", kind: "symlink", data: "../tmp/x"},
		{path: "dangling", kind: "symlink", data: "nowhere/at/all"},
		{path: "ownedlink", kind: "symlink", data: "app.pid", uid: 1234, gid: 5678},
		{path: "h1", kind: "file", mode: 0o644, data: "hardlinked"},
		{path: "lock/h2", kind: "hardlink", data: "h1"},
		{path: "nested/h3", kind: "hardlink", data: "h1"},
		{path: "ctl", kind: "fifo", mode: 0o620, uid: 1234, gid: 5678},
		{path: "su", kind: "file", mode: 0o755 | fs.ModeSetuid | fs.ModeSetgid, data: "#!", uid: 0, gid: 0},
		{path: "shared", kind: "dir", mode: 0o777 | fs.ModeSticky},
		{path: "empty", kind: "dir", mode: 0o711},
	}, chown)
	build(t, filepath.Join(rootfs, "tmp"), []entry{
		{path: ".X11-unix", kind: "dir", mode: 0o777 | fs.ModeSticky},
		{path: "x", kind: "file", mode: 0o666, data: "x"},
		{path: "suid-owned", kind: "file", mode: 0o4750, data: "s", uid: 1234, gid: 5678},
	}, chown)

	beforeRun, beforeTmp := snapshot(t, filepath.Join(rootfs, "run")), snapshot(t, filepath.Join(rootfs, "tmp"))
	timesRun := mtimes(t, filepath.Join(rootfs, "run"))

	res, err := Protect(rootfs)
	must(t, err)
	if strings.Join(res.Moved, " ") != "/run /tmp" || len(res.Skipped) != 0 {
		t.Fatalf("Protect = %+v, want both moved", res)
	}
	for _, d := range []struct {
		name   string
		mode   fs.FileMode
		uid    uint32
		before map[string]tree.Node
	}{
		{"run", fs.ModeDir | 0o755, beforeRun["/"].UID, beforeRun},
		{"tmp", fs.ModeDir | 0o777 | fs.ModeSticky, beforeTmp["/"].UID, beforeTmp},
	} {
		p := filepath.Join(rootfs, d.name)
		fi, err := os.Lstat(p)
		must(t, err)
		if fi.Mode() != d.mode {
			t.Errorf("/%s mode = %v, want %v", d.name, fi.Mode(), d.mode)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != d.uid {
			t.Errorf("/%s owner = %d, want %d", d.name, uid, d.uid)
		}
		if ents, _ := os.ReadDir(p); len(ents) != 0 {
			t.Errorf("/%s is not empty after Protect", d.name)
		}
		if diff := tree.Diff(d.before, snapshot(t, p+Suffix)); len(diff) != 0 {
			t.Errorf("/%s%s differs from the original directory: %v", d.name, Suffix, diff)
		}
	}

	stats, err := Restore(rootfs)
	must(t, err)
	if d := tree.Diff(beforeRun, snapshot(t, filepath.Join(rootfs, "run"))); len(d) != 0 {
		t.Errorf("/run differs after the round trip:\n%s", strings.Join(d, "\n"))
	}
	if d := tree.Diff(beforeTmp, snapshot(t, filepath.Join(rootfs, "tmp"))); len(d) != 0 {
		t.Errorf("/tmp differs after the round trip:\n%s", strings.Join(d, "\n"))
	}
	after := mtimes(t, filepath.Join(rootfs, "run"))
	for p, want := range timesRun {
		if p == "." {
			continue // the recreated directory is new
		}
		if got := after[p]; !got.Equal(want) {
			t.Errorf("mtime of %s = %v, want %v", p, got, want)
		}
	}
	want := Stats{Dirs: 10, Files: 8, Bytes: 24, Symlinks: 4, Hardlinks: 2, Special: 1}
	if stats != want {
		t.Errorf("Restore stats = %+v, want %+v", stats, want)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "run"+Suffix)); err != nil {
		t.Errorf("the protected directory must stay for the next boot: %v", err)
	}
}

func TestProtectSkips(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, rootfs string)
		want  map[string]string // skipped dir → part of the reason
		moved string
	}{
		{
			name:  "absent",
			setup: func(t *testing.T, rootfs string) {},
			want:  map[string]string{"/run": "absent", "/tmp": "absent"},
		},
		{
			name: "empty",
			setup: func(t *testing.T, rootfs string) {
				must(t, os.Mkdir(filepath.Join(rootfs, "run"), 0o755))
				must(t, os.Mkdir(filepath.Join(rootfs, "tmp"), 0o755))
			},
			want: map[string]string{"/run": "empty", "/tmp": "empty"},
		},
		{
			name: "symlinked run",
			setup: func(t *testing.T, rootfs string) {
				must(t, os.MkdirAll(filepath.Join(rootfs, "var/run"), 0o755))
				must(t, os.WriteFile(filepath.Join(rootfs, "var/run/pid"), []byte("1"), 0o644))
				must(t, os.Symlink("var/run", filepath.Join(rootfs, "run")))
				must(t, os.MkdirAll(filepath.Join(rootfs, "tmp/a"), 0o755))
			},
			want:  map[string]string{"/run": "a symlink to var/run"},
			moved: "/tmp",
		},
		{
			name: "tmp is a file",
			setup: func(t *testing.T, rootfs string) {
				must(t, os.WriteFile(filepath.Join(rootfs, "tmp"), []byte("?"), 0o644))
			},
			want: map[string]string{"/run": "absent", "/tmp": "not a directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootfs := t.TempDir()
			tt.setup(t, rootfs)
			before := snapshot(t, rootfs)
			res, err := Protect(rootfs)
			must(t, err)
			if got := strings.Join(res.Moved, " "); got != tt.moved {
				t.Errorf("moved %q, want %q", got, tt.moved)
			}
			if len(res.Skipped) != len(tt.want) {
				t.Errorf("skipped %v, want %v", res.Skipped, tt.want)
			}
			for dir, reason := range tt.want {
				if !strings.Contains(res.Skipped[dir], reason) {
					t.Errorf("skipped[%s] = %q, want %q", dir, res.Skipped[dir], reason)
				}
				// A skipped directory is untouched.
				name := strings.TrimPrefix(dir, "/")
				for p := range before {
					if p == "/"+name || strings.HasPrefix(p, "/"+name+"/") {
						if d := tree.Diff(map[string]tree.Node{p: before[p]}, map[string]tree.Node{p: snapshot(t, rootfs)[p]}); len(d) != 0 {
							t.Errorf("%s changed: %v", p, d)
						}
					}
				}
				if _, err := os.Lstat(filepath.Join(rootfs, name+Suffix)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s%s exists for a skipped directory", dir, Suffix)
				}
			}
			// Restore after a skip-only Protect is a no-op.
			if tt.moved == "" {
				stats, err := Restore(rootfs)
				if err != nil || stats != (Stats{}) {
					t.Errorf("Restore = %+v, %v; want nothing done", stats, err)
				}
			}
		})
	}
}

func TestProtectRefusesExistingAside(t *testing.T) {
	rootfs := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(rootfs, "run/x"), 0o755))
	must(t, os.MkdirAll(filepath.Join(rootfs, "run"+Suffix), 0o755))
	before := snapshot(t, rootfs)
	if _, err := Protect(rootfs); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Protect = %v, want an already-exists error", err)
	}
	if d := tree.Diff(before, snapshot(t, rootfs)); len(d) != 0 {
		t.Fatalf("rootfs changed: %v", d)
	}
}

// TestRestoreNeverFollowsSymlinks checks that entries already in the target that are
// symlinks to the outside are replaced, never written through, and that a target
// directory that is itself a symlink is refused.
func TestRestoreNeverFollowsSymlinks(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root, outside string)
		wantErr string
	}{
		{
			name: "symlink where a directory goes",
			setup: func(t *testing.T, root, outside string) {
				must(t, os.Symlink(outside, filepath.Join(root, "run/sub")))
			},
		},
		{
			name: "symlink where a file goes",
			setup: func(t *testing.T, root, outside string) {
				must(t, os.Symlink(filepath.Join(outside, "victim"), filepath.Join(root, "run/file")))
			},
		},
		{
			name: "target directory is a symlink",
			setup: func(t *testing.T, root, outside string) {
				must(t, os.Remove(filepath.Join(root, "run")))
				must(t, os.Symlink(outside, filepath.Join(root, "run")))
			},
			wantErr: "not a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			must(t, os.WriteFile(filepath.Join(outside, "victim"), []byte("host"), 0o644))
			aside := filepath.Join(root, "run"+Suffix)
			must(t, os.MkdirAll(filepath.Join(aside, "sub"), 0o755))
			must(t, os.WriteFile(filepath.Join(aside, "sub/victim"), []byte("image"), 0o644))
			must(t, os.WriteFile(filepath.Join(aside, "file"), []byte("image"), 0o644))
			must(t, os.Mkdir(filepath.Join(root, "run"), 0o755))
			tt.setup(t, root, outside)
			wantOutside := snapshot(t, outside)

			_, err := Restore(root)
			if tt.wantErr == "" {
				must(t, err)
				if d := tree.Diff(snapshot(t, aside), snapshot(t, filepath.Join(root, "run"))); len(d) != 0 {
					t.Errorf("/run differs from the protected copy: %v", d)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Restore = %v, want an error containing %q", err, tt.wantErr)
			}
			if d := tree.Diff(wantOutside, snapshot(t, outside)); len(d) != 0 {
				t.Errorf("a file outside the target changed: %v", d)
			}
		})
	}
}

func TestRestoreOverwritesAndMerges(t *testing.T) {
	root := t.TempDir()
	aside := filepath.Join(root, "tmp"+Suffix)
	must(t, os.MkdirAll(filepath.Join(aside, "d"), 0o700))
	must(t, os.WriteFile(filepath.Join(aside, "d/f"), []byte("image"), 0o644))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(aside, "sock"), Net: "unix"})
	must(t, err)
	l.SetUnlinkOnClose(false)
	must(t, l.Close())
	// What the machine manager put there first: a directory that is kept, a file that is replaced.
	must(t, os.MkdirAll(filepath.Join(root, "tmp/d"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "tmp/d/f"), []byte("old"), 0o600))
	must(t, os.WriteFile(filepath.Join(root, "tmp/d/other"), []byte("kept"), 0o600))

	stats, err := Restore(root)
	must(t, err)
	if got, _ := os.ReadFile(filepath.Join(root, "tmp/d/f")); string(got) != "image" {
		t.Errorf("d/f = %q, want the image's content", got)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "tmp/d/other")); string(got) != "kept" {
		t.Errorf("d/other = %q, want it kept", got)
	}
	if fi, err := os.Lstat(filepath.Join(root, "tmp/d")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the existing directory d must keep its mode: %v %v", fi.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(root, "tmp/sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sockets must be skipped, got %v", err)
	}
	if want := (Stats{Dirs: 1, Files: 1, Bytes: 5, Skipped: 1}); stats != want {
		t.Errorf("stats = %+v, want %+v", stats, want)
	}
}
