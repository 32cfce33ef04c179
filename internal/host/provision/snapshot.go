package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
)

// A snapshot of a machine is a dir in machine.Paths.Snapshots named by its
// label, holding:
//
//	rootfs     a read-only btrfs snapshot of the rootfs (a strict
//	           machine's: a link to its image root, which then stays)
//	config/    a copy of the config dir: files, secrets, config volumes
//	storage    with volumes: the storage dir, a read-only snapshot where
//	           it is a subvolume, else a copy
//	snapshot.json  its record (Snapshot)
//
// It is built under a staging name and renamed into place, journaled.
const (
	snapRootfs  = "rootfs"
	snapConfig  = "config"
	snapStorage = "storage"
	snapRecord  = "snapshot.json"
)

// Snapshot is one snapshot of a machine.
type Snapshot struct {
	Label   string    `json:"label"`
	Created time.Time `json:"created"`
	// Digest is the image the machine ran; Strict tells that its rootfs
	// was the image's shared root.
	Digest string `json:"digest"`
	Strict bool   `json:"strict"`
	// Volumes tells that the storage dir is in it.
	Volumes bool   `json:"volumes"`
	Path    string `json:"path"`
}

// labelPattern is what a label may be: it names a dir.
var labelPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckLabel validates a snapshot label.
func CheckLabel(label string) error {
	if !labelPattern.MatchString(label) {
		return fmt.Errorf("snapshot label %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", label)
	}
	return nil
}

// ErrNeedsBtrfs says that snapshots need the machines dir on btrfs.
var ErrNeedsBtrfs = errors.New("snapshots need btrfs")

// checkBtrfs checks that machine p's rootfs can be snapshotted.
func checkBtrfs(dirs config.Paths, p machine.Paths) error {
	on, err := btrfs.Is(dirs.Machines)
	if err != nil {
		return err
	}
	if !on {
		return fmt.Errorf("machine %s: %w: the machines dir %s (paths.machines) is on another file system; put it on btrfs (a subvolume or a btrfs disk mounted there) and pull the machines again",
			p.Name, ErrNeedsBtrfs, dirs.Machines)
	}
	if isLink(p.Rootfs) {
		return nil
	}
	if sub, err := btrfs.IsSubvolume(p.Rootfs); err != nil {
		return err
	} else if !sub {
		return fmt.Errorf("machine %s: %w: its rootfs %s is a plain dir, not a btrfs subvolume (made before the machines dir was on btrfs); 'mbctl machines rebuild %s' makes it one",
			p.Name, ErrNeedsBtrfs, p.Rootfs, p.Name)
	}
	return nil
}

// TakeSnapshot snapshots machine name as label (a time stamp if empty);
// with volumes its storage dir too.
func TakeSnapshot(dirs config.Paths, name, label string, volumes bool, now time.Time, log *slog.Logger) (*Snapshot, error) {
	if err := machine.ValidateName(name); err != nil {
		return nil, err
	}
	if now.IsZero() {
		now = time.Now()
	}
	if label == "" {
		label = now.UTC().Format("20060102-150405")
	}
	if err := CheckLabel(label); err != nil {
		return nil, err
	}
	p := machine.PathsFor(dirs, name)
	if _, err := os.Lstat(p.Rootfs); err != nil {
		return nil, fmt.Errorf("machine %s has no root file system to snapshot: %w", name, err)
	}
	if err := checkBtrfs(dirs, p); err != nil {
		return nil, err
	}
	final := filepath.Join(p.Snapshots, label)
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("machine %s already has a snapshot %s: choose another label, or delete it with 'mbctl machines snapshot --delete %s %s'", name, label, name, label)
	}
	env, err := envfile.ReadFile(p.Env)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	snap := &Snapshot{Label: label, Created: now.UTC(), Digest: valueOf(env, man8env.KeyDigest), Strict: isLink(p.Rootfs), Volumes: volumes, Path: final}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	err = journaled(dirs, "machines snapshot "+name, true, log, func(j *journal.Journal) error {
		if err := os.MkdirAll(p.Snapshots, 0o700); err != nil {
			return err
		}
		stage, err := j.MkdirUnique(p.Snapshots, "."+label+stagingMark)
		if err != nil {
			return err
		}
		if snap.Strict {
			t, err := os.Readlink(p.Rootfs)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, filepath.Join(stage, snapRootfs)); err != nil {
				return err
			}
		} else if err := btrfs.Snapshot(p.Rootfs, filepath.Join(stage, snapRootfs), true); err != nil {
			return err
		}
		if err := copyDir(p.ConfigDir, filepath.Join(stage, snapConfig)); err != nil {
			return fmt.Errorf("copying the config dir %s: %w", p.ConfigDir, err)
		}
		if volumes {
			if err := snapshotOrCopy(p.StorageDir, filepath.Join(stage, snapStorage)); err != nil {
				return fmt.Errorf("the storage dir %s: %w", p.StorageDir, err)
			}
		}
		b, err := json.MarshalIndent(snap, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(stage, snapRecord), append(b, '\n'), 0o600); err != nil {
			return err
		}
		if err := j.Log(journal.Record{Op: journal.OpRename, From: stage, Path: final}); err != nil {
			return err
		}
		if err := unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("moving %s to %s: %w", stage, final, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

// copyDir copies dir src to dst (which must not exist) with its owner,
// mode and content.
func copyDir(src, dst string) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	if _, err := fsutil.CopyTree(src, dst); err != nil {
		return err
	}
	return fsutil.CopyMeta(src, dst)
}

// snapshotOrCopy makes dst a read-only snapshot of src where src is a
// btrfs subvolume, else a copy.
func snapshotOrCopy(src, dst string) error {
	if sub, err := btrfs.IsSubvolume(src); err != nil {
		return err
	} else if sub {
		return btrfs.Snapshot(src, dst, true)
	}
	return copyDir(src, dst)
}

// Snapshots lists machine name's snapshots, oldest first.
func Snapshots(dirs config.Paths, name string) ([]Snapshot, error) {
	if err := machine.ValidateName(name); err != nil {
		return nil, err
	}
	p := machine.PathsFor(dirs, name)
	ents, err := os.ReadDir(p.Snapshots)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Snapshot
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue
		}
		s, err := readSnapshot(filepath.Join(p.Snapshots, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Snapshot) int { return a.Created.Compare(b.Created) })
	return out, nil
}

func readSnapshot(dir string) (*Snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, snapRecord))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot %s: %s: %w", dir, snapRecord, err)
	}
	s.Path, s.Label = dir, filepath.Base(dir)
	return &s, nil
}

// lookupSnapshot returns machine p's snapshot label.
func lookupSnapshot(p machine.Paths, label string) (*Snapshot, error) {
	if err := CheckLabel(label); err != nil {
		return nil, err
	}
	dir := filepath.Join(p.Snapshots, label)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("machine %s has no snapshot %s (see 'mbctl machines snapshots %s')", p.Name, label, p.Name)
	}
	return readSnapshot(dir)
}

// DeleteSnapshot deletes machine name's snapshot label.
func DeleteSnapshot(dirs config.Paths, name, label string) error {
	if err := machine.ValidateName(name); err != nil {
		return err
	}
	s, err := lookupSnapshot(machine.PathsFor(dirs, name), label)
	if err != nil {
		return err
	}
	return btrfs.RemoveAll(s.Path)
}

// Restored describes a restore.
type Restored struct {
	Snapshot Snapshot `json:"snapshot"`
	// Volumes tells that the storage dir was restored too.
	Volumes bool `json:"volumes"`
}

// Restore puts machine name back to its snapshot label: its rootfs and
// config dir, and with volumes its storage dir. The machine must be
// stopped (the caller checks). Journaled: a crash midway leaves the
// machine as it was; what the restore replaced is deleted after it.
func Restore(dirs config.Paths, name, label string, volumes bool, log *slog.Logger) (*Restored, error) {
	if err := machine.ValidateName(name); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := machine.PathsFor(dirs, name)
	s, err := lookupSnapshot(p, label)
	if err != nil {
		return nil, err
	}
	if volumes && !s.Volumes {
		return nil, fmt.Errorf("snapshot %s of machine %s holds no volumes (it was taken without --volumes): restore it without --volumes", label, name)
	}
	unlock, err := lockRecovered(dirs, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var replaced []string
	err = journaled(dirs, "machines restore "+name, true, log, func(j *journal.Journal) error {
		type part struct {
			final string
			fill  func(stage string) error
		}
		parts := []part{
			{p.Rootfs, func(stage string) error {
				src := filepath.Join(s.Path, snapRootfs)
				if isLink(src) {
					t, err := os.Readlink(src)
					if err != nil {
						return err
					}
					return os.Symlink(t, stage)
				}
				return btrfs.Snapshot(src, stage, false)
			}},
			{p.ConfigDir, func(stage string) error { return copyDir(filepath.Join(s.Path, snapConfig), stage) }},
		}
		if volumes {
			parts = append(parts, part{p.StorageDir, func(stage string) error {
				src := filepath.Join(s.Path, snapStorage)
				if sub, err := btrfs.IsSubvolume(src); err != nil {
					return err
				} else if sub {
					return btrfs.Snapshot(src, stage, false)
				}
				return copyDir(src, stage)
			}})
		}
		for _, pt := range parts {
			if err := os.MkdirAll(filepath.Dir(pt.final), 0o700); err != nil {
				return err
			}
			stage, err := j.CreateUnique(filepath.Dir(pt.final), StagingPrefix(pt.final), pt.fill)
			if err != nil {
				return fmt.Errorf("restoring %s: %w", pt.final, err)
			}
			if _, err := os.Lstat(pt.final); err == nil {
				if err := j.Exchange(stage, pt.final); err != nil {
					return err
				}
				replaced = append(replaced, stage)
				continue
			}
			if err := j.Log(journal.Record{Op: journal.OpRename, From: stage, Path: pt.final}); err != nil {
				return err
			}
			if err := unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, pt.final, unix.RENAME_NOREPLACE); err != nil {
				return fmt.Errorf("moving %s to %s: %w", stage, pt.final, err)
			}
		}
		return makeLinks(j, p, func(string) error { return nil })
	})
	if err != nil {
		return nil, err
	}
	for _, old := range replaced {
		if err := btrfs.RemoveAll(old); err != nil {
			log.Warn("deleting what the restore replaced", "path", old, "err", err)
		}
	}
	return &Restored{Snapshot: *s, Volumes: volumes}, nil
}
