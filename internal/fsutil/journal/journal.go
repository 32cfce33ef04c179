// Package journal makes a run's changes to the file system undoable after
// any crash. A run writes what it is about to create into its journal
// before it creates it (write-ahead: a kill between the two leaves a record
// of something that does not exist, never the reverse), holds an flock(2)
// on the journal for its whole life, and removes the journal when it
// commits. The kernel drops the lock when a process dies, even by SIGKILL,
// so a journal whose lock is free belongs to a dead run: Recover takes back
// what it lists, exactly as the run itself would have after an error.
//
// Rolling back, not forward: a dead run may have died anywhere (half an
// unpack, half the renames of an install), and only rolling back is right
// in every case; finishing an install would need everything the run was
// given (its options, the image), which a journal does not hold. A machine
// is therefore either absent or complete after any kill: the run commits
// only after its last rename and link.
//
// Records are JSON lines, each synced (fdatasync) before the action, so a
// power loss cannot lose a record of a change that reached the disk. A torn
// last line is ignored: its action never started.
package journal

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil/btrfs"
)

// Ops of a record.
const (
	// OpDir: a dir (or file) the run creates with a name nobody else uses;
	// rolled back with its whole content.
	OpDir = "dir"
	// OpParent: a dir the run creates to hold what it makes, which others
	// may share by the time it ends; rolled back only while empty.
	OpParent = "parent"
	// OpRename: From, one of the run's own dirs, becomes Path, which did
	// not exist (RENAME_NOREPLACE); rolled back by removing whichever of
	// the two holds it.
	OpRename = "rename"
	// OpLink: a symlink Path -> Target; rolled back if it still points
	// there.
	OpLink = "link"
	// OpMove: From, which exists and is not the run's to delete (a
	// machine's current rootfs, say), moves to Path, which did not exist
	// (RENAME_NOREPLACE); rolled back by moving it back.
	OpMove = "move"
	// OpExchange: From and Path swap places (RENAME_EXCHANGE); Ino is
	// From's inode before the swap. Rolled back by swapping again when
	// Path holds that inode, which tells a swap that happened from one
	// that was only recorded.
	OpExchange = "exchange"
	// OpCancel: the record of Path before it was never acted on (the name
	// was taken); nothing to roll back.
	OpCancel = "cancel"
	// opBegin is the first record: what the run is, for reports.
	opBegin = "begin"
)

// Record is one line of a journal.
type Record struct {
	Op     string `json:"op"`
	Path   string `json:"path,omitempty"`
	From   string `json:"from,omitempty"`
	Target string `json:"target,omitempty"`
	// Ino and Dev identify From for OpExchange. Both are needed: every
	// btrfs subvolume's root dir is inode 256, told apart by its device.
	Ino uint64 `json:"ino,omitempty"`
	Dev uint64 `json:"dev,omitempty"`
	// What says what the run was (begin record only), e.g. "machines pull web".
	What string `json:"what,omitempty"`
	PID  int    `json:"pid,omitempty"`
}

// suffix of a journal file; a file being set up has suffix + ".new".
const suffix = ".journal"

// Journal is the journal of one run. Its methods may be called from
// several goroutines.
type Journal struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	records []Record
	done    bool
}

// Begin starts the journal of a run in dir (created 0700 if missing),
// locked for the run's life. what names the run in reports.
func Begin(dir, what string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the journal dir %s: %w", dir, err)
	}
	name, err := randomName("run-")
	if err != nil {
		return nil, err
	}
	final := filepath.Join(dir, name+suffix)
	// Lock before the journal is visible under its name, so no sweeper
	// ever finds it unlocked while its run lives.
	tmp := final + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating a journal in %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("locking journal %s: %w", tmp, err)
	}
	j := &Journal{f: f, path: final}
	if err := j.write(Record{Op: opBegin, What: what, PID: os.Getpid()}); err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("starting journal %s: %w", final, err)
	}
	return j, nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Log records r before the caller acts on it.
func (j *Journal) Log(r Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return errors.New("journal already closed")
	}
	if err := j.write(r); err != nil {
		return fmt.Errorf("writing journal %s: %w", j.path, err)
	}
	j.records = append(j.records, r)
	return nil
}

func (j *Journal) write(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return unix.Fdatasync(int(j.f.Fd()))
}

// MkdirUnique creates a dir named prefix + random in parent (mode 0700),
// recorded first (OpDir), and returns its path.
func (j *Journal) MkdirUnique(parent, prefix string) (string, error) {
	return j.CreateUnique(parent, prefix, func(p string) error { return os.Mkdir(p, 0o700) })
}

// CreateUnique is MkdirUnique with create making the entry (a btrfs
// subvolume or snapshot, a symlink) at the path it is given, which does
// not exist yet; it is recorded first (OpDir), and a name that turns out
// taken is tried again with another. When create fails otherwise, what it
// made of the entry goes with the run's rollback.
func (j *Journal) CreateUnique(parent, prefix string, create func(path string) error) (string, error) {
	for range 10 {
		name, err := randomName(prefix)
		if err != nil {
			return "", err
		}
		p := filepath.Join(parent, name)
		if err := j.Log(Record{Op: OpDir, Path: p}); err != nil {
			return "", err
		}
		err = create(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			// The record stays: a rollback removes what create made of
			// it before it failed.
			return "", err
		}
		// Someone else's: not to be removed.
		if cerr := j.Log(Record{Op: OpCancel, Path: p}); cerr != nil {
			return "", errors.Join(err, cerr)
		}
	}
	return "", fmt.Errorf("creating a unique entry in %s: every name tried was taken", parent)
}

// Move renames from, which exists, to to, which must not, recorded first
// (OpMove): a rollback moves it back.
func (j *Journal) Move(from, to string) error {
	if err := j.Log(Record{Op: OpMove, From: from, Path: to}); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("moving %s to %s: %w", from, to, err)
	}
	return nil
}

// Exchange swaps a and b atomically (both must exist, on one file
// system), recorded first (OpExchange): a rollback swaps them back.
func (j *Journal) Exchange(a, b string) error {
	var st unix.Stat_t
	if err := unix.Lstat(a, &st); err != nil {
		return fmt.Errorf("exchanging %s and %s: %w", a, b, err)
	}
	if err := j.Log(Record{Op: OpExchange, From: a, Path: b, Ino: st.Ino, Dev: st.Dev}); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("exchanging %s and %s: %w", a, b, err)
	}
	return nil
}

// Commit ends a successful run: what it made stays, the journal goes.
func (j *Journal) Commit() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return nil
	}
	j.done = true
	err := os.Remove(j.path)
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Rollback takes back everything recorded, newest first, then removes the
// journal. What it could not take back is returned (errors.Join); the
// journal then stays, so that a later Recover tries again.
func (j *Journal) Rollback() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return nil
	}
	j.done = true
	err := rollback(j.records)
	if err == nil {
		err = os.Remove(j.path)
	}
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rollback undoes records newest first.
func rollback(records []Record) error {
	cancelled := map[string]bool{}
	var errs []error
	for i := len(records) - 1; i >= 0; i-- {
		r := records[i]
		switch r.Op {
		case OpCancel:
			cancelled[r.Path] = true
		case OpDir:
			if cancelled[r.Path] {
				delete(cancelled, r.Path)
				continue
			}
			if err := btrfs.RemoveAll(r.Path); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", r.Path, err))
			}
		case OpParent:
			if cancelled[r.Path] {
				delete(cancelled, r.Path)
				continue
			}
			// Not empty: someone else's by now.
			if err := unix.Rmdir(r.Path); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("removing %s: %w", r.Path, err))
			}
		case OpRename:
			// The rename happened if From is gone; then Path is ours
			// (RENAME_NOREPLACE). Else From is still ours and Path,
			// if it exists, someone else's.
			victim := r.Path
			if _, err := os.Lstat(r.From); err == nil {
				victim = r.From
			}
			if err := btrfs.RemoveAll(victim); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", victim, err))
			}
		case OpMove:
			if _, err := os.Lstat(r.From); err == nil {
				continue // never moved
			}
			if _, err := os.Lstat(r.Path); err != nil {
				continue
			}
			if err := unix.Renameat2(unix.AT_FDCWD, r.Path, unix.AT_FDCWD, r.From, unix.RENAME_NOREPLACE); err != nil {
				errs = append(errs, fmt.Errorf("moving %s back to %s: %w", r.Path, r.From, err))
			}
		case OpExchange:
			var st unix.Stat_t
			if err := unix.Lstat(r.Path, &st); err != nil || st.Ino != r.Ino || (r.Dev != 0 && st.Dev != r.Dev) {
				continue // never swapped
			}
			if err := unix.Renameat2(unix.AT_FDCWD, r.Path, unix.AT_FDCWD, r.From, unix.RENAME_EXCHANGE); err != nil {
				errs = append(errs, fmt.Errorf("swapping %s and %s back: %w", r.Path, r.From, err))
			}
		case OpLink:
			if cancelled[r.Path] {
				delete(cancelled, r.Path)
				continue
			}
			if t, err := os.Readlink(r.Path); err == nil && t == r.Target {
				if err := os.Remove(r.Path); err != nil {
					errs = append(errs, fmt.Errorf("removing %s: %w", r.Path, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Dead is a journal of a run that died, as Recover found it.
type Dead struct {
	// Journal is its file; What and PID say which run it was.
	Journal string
	What    string
	PID     int
	// Records are what it had made (or was about to make).
	Records []Record
	// Err is what could not be taken back; the journal then stays.
	Err error
}

// Recover rolls back every journal in dir whose run is dead (its lock is
// free), and removes it. With dryRun it only reports them. A missing dir
// holds none.
func Recover(dir string, dryRun bool) ([]Dead, error) {
	files, err := journals(dir)
	if err != nil {
		return nil, err
	}
	var dead []Dead
	for _, p := range files {
		f, err := os.OpenFile(p, os.O_RDWR|unix.O_CLOEXEC, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue // committed meanwhile
		}
		if err != nil {
			return dead, fmt.Errorf("opening journal %s: %w", p, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close() // alive
			continue
		}
		// Locked by us now; it may have been committed (unlinked) between
		// the open and the lock.
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			f.Close()
			continue
		}
		d := Dead{Journal: p}
		recs, err := read(f)
		if err != nil {
			f.Close()
			return dead, fmt.Errorf("reading journal %s: %w", p, err)
		}
		for _, r := range recs {
			if r.Op == opBegin {
				d.What, d.PID = r.What, r.PID
				continue
			}
			d.Records = append(d.Records, r)
		}
		if !dryRun {
			if d.Err = rollback(d.Records); d.Err == nil {
				d.Err = os.Remove(p)
			}
		}
		f.Close()
		dead = append(dead, d)
	}
	return dead, nil
}

// Live returns the paths that the journals of running runs in dir name:
// their staging dirs and what they move into place. Call it after listing
// the dirs to sweep: a run records a path before it creates it, so any path
// that existed at the listing is found here if its run lives.
func Live(dir string) (map[string]bool, error) {
	files, err := journals(dir)
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, p := range files {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("opening journal %s: %w", p, err)
		}
		recs, err := read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading journal %s: %w", p, err)
		}
		for _, r := range recs {
			for _, q := range []string{r.Path, r.From} {
				if q != "" {
					live[q] = true
				}
			}
		}
	}
	return live, nil
}

// journals lists the journal files in dir, and also those still being set
// up (".new": locked by their run from the start, or left by a run killed
// before the rename, whose single begin record is harmless to replay).
func journals(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing journals in %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); e.Type().IsRegular() && (strings.HasSuffix(n, suffix) || strings.HasSuffix(n, suffix+".new")) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// read parses a journal; a torn last line (no newline) is ignored.
func read(f *os.File) ([]Record, error) {
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var lines [][]byte
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, l := range lines {
		var r Record
		if err := json.Unmarshal(l, &r); err != nil {
			if i == len(lines)-1 {
				break // torn by a crash mid-write: never acted on
			}
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// randomName is prefix followed by 12 random hex digits.
func randomName(prefix string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(b[:]), nil
}
