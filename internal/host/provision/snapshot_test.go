package provision

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/testbed/loopfs"
)

// TestSnapshotRestore snapshots a machine on btrfs with its volumes,
// changes its rootfs, files and data, and restores the snapshot: all three
// are back; without --volumes the data stays as it is.
func TestSnapshotRestore(t *testing.T) {
	im := appImage(t)
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "free", true: "strict"}[strict], func(t *testing.T) {
			o, _ := testOptions(t, im)
			o.Dirs = underDir(loopfs.MountT(t, "btrfs", 512<<20))
			o.Strict = strict
			o.Volumes = o.Volumes[:2]
			res, err := Create(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			p := res.Paths
			data := filepath.Join(p.StorageDir, "var/lib/app/data.txt")
			conf := filepath.Join(p.ConfigDir, "etc/app/app.conf")
			rootFile := filepath.Join(p.Rootfs, "etc/app/mine")
			write := func(path, content string) {
				t.Helper()
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !strict {
				write(rootFile, "before")
			}
			write(data, "rows before")
			s, err := TakeSnapshot(o.Dirs, o.Name, "", true, time.Date(2026, 12, 4, 1, 2, 3, 0, time.UTC), nil)
			if err != nil {
				t.Fatal(err)
			}
			if s.Label != "20261204-010203" || s.Strict != strict || !s.Volumes {
				t.Errorf("snapshot %+v", s)
			}
			if _, err := TakeSnapshot(o.Dirs, o.Name, s.Label, false, time.Time{}, nil); err == nil {
				t.Error("a second snapshot under the same label was taken")
			}
			if !strict {
				write(rootFile, "after")
			}
			write(data, "rows after")
			write(conf, "changed\n")

			if _, err := Restore(o.Dirs, o.Name, s.Label, false, nil); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, conf); got != "listen=:80\n" {
				t.Errorf("config volume after restore: %q", got)
			}
			if got := readFile(t, data); got != "rows after" {
				t.Errorf("data without --volumes: %q, want it untouched", got)
			}
			if !strict {
				if got := readFile(t, rootFile); got != "before" {
					t.Errorf("rootfs after restore: %q", got)
				}
			}
			if _, err := Restore(o.Dirs, o.Name, s.Label, true, nil); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, data); got != "rows before" {
				t.Errorf("data after restore --volumes: %q", got)
			}
			if strict {
				if got, _ := os.Readlink(p.Rootfs); got != res.Root.Path {
					t.Errorf("strict rootfs after restore -> %q", got)
				}
				if used := ImageRootsOf(o.Dirs, o.Name); len(used) != 1 {
					t.Errorf("image roots of the machine: %v", used)
				}
			}
			list, err := Snapshots(o.Dirs, o.Name)
			if err != nil || len(list) != 1 || list[0].Label != s.Label {
				t.Fatalf("snapshots: %+v, %v", list, err)
			}
			// Nothing of the restores is left beside the machine.
			for _, d := range []string{o.Dirs.Machines, o.Dirs.Configs, o.Dirs.Storage} {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					if n := e.Name(); n != o.Name && n != ".images" && n != ".snapshots" {
						t.Errorf("left in %s: %s", d, n)
					}
				}
			}
			if err := DeleteSnapshot(o.Dirs, o.Name, s.Label); err != nil {
				t.Fatal(err)
			}
			if list, _ := Snapshots(o.Dirs, o.Name); len(list) != 0 {
				t.Errorf("snapshots after delete: %v", list)
			}
		})
	}
}

// TestSnapshotNeedsBtrfs: elsewhere the command says what it needs.
func TestSnapshotNeedsBtrfs(t *testing.T) {
	im := appImage(t)
	o, _ := testOptions(t, im)
	o.Volumes = o.Volumes[:2]
	if _, err := Create(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	_, err := TakeSnapshot(o.Dirs, o.Name, "x", false, time.Time{}, nil)
	if !errors.Is(err, ErrNeedsBtrfs) {
		t.Fatalf("snapshot on a non-btrfs machines dir: %v", err)
	}
	if _, err := os.Stat(machine.PathsFor(o.Dirs, o.Name).Snapshots); !os.IsNotExist(err) {
		t.Errorf("the refused snapshot left its dir: %v", err)
	}
}
