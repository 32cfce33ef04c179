// Package secret keeps a machine's secrets on the host: values its app
// needs (passwords, tokens) that stay out of man8env.env. Each secret is
// one file (mode 0600, written atomically) in the dir "secrets" of the
// machine's config dir (mode 0700), named like the environment variable
// the app gets it as; the machine's settings bind that dir read-only at
// /run/secrets (man8env.SecretsPath), where man8s-init reads it at start.
//
// Values are never logged, printed or put into an error: only names are.
package secret

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/host/machine"
)

// DirName is the secrets dir's name inside a machine's config dir.
const DirName = "secrets"

// Modes of the secrets dir and of each secret's file.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// ErrNotFound is wrapped by Remove's error for a secret that is not there.
var ErrNotFound = errors.New("no such secret")

// Store is the secrets of one machine. The zero value is not usable; see
// For.
type Store struct {
	machine   string
	configDir string
	settings  string
	dir       string
}

// For returns the store of the machine with paths p.
func For(p machine.Paths) Store {
	return Store{machine: p.Name, configDir: p.ConfigDir, settings: p.Settings, dir: filepath.Join(p.ConfigDir, DirName)}
}

// Dir is the secrets dir on the host.
func (s Store) Dir() string { return s.dir }

// Secret describes one secret, without its value.
type Secret struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// List returns the machine's secrets, sorted by name: the regular files of
// the secrets dir with valid names (man8env.CheckSecretName); anything
// else there is not a secret and man8s-init skips it too. A machine
// without secrets dir has none.
func (s Store) List() ([]Secret, error) {
	if err := s.CheckMachine(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Secret{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing secrets of machine %s: %w", s.machine, err)
	}
	out := []Secret{}
	for _, e := range ents {
		if !e.Type().IsRegular() || man8env.CheckSecretName(e.Name()) != nil {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("listing secrets of machine %s: %w", s.machine, err)
		}
		out = append(out, Secret{Name: e.Name(), Size: fi.Size(), Modified: fi.ModTime()})
	}
	return out, nil // ReadDir sorts by name
}

// Names returns the names of the machine's secrets, sorted.
func (s Store) Names() ([]string, error) {
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, sec := range list {
		names[i] = sec.Name
	}
	return names, nil
}

// SetResult says what Set did besides writing the value.
type SetResult struct {
	// Replaced tells that the secret existed and got a new value.
	Replaced bool
	// BindAdded is the line added to the settings to bind the secrets dir
	// at /run/secrets ("" when a bind there was already set up).
	BindAdded string
}

// Set stores value as the secret name: it creates the secrets dir (0700)
// if needed, makes sure the settings bind it at /run/secrets (a line added
// to [Files] with the editor that keeps comments), then writes the file
// (0600) atomically: a reader sees the old value or the new one. Name and
// value are checked first (man8env.CheckSecretName, CheckSecretValue);
// the value may be empty.
func (s Store) Set(name string, value []byte) (SetResult, error) {
	var res SetResult
	if err := man8env.CheckSecretName(name); err != nil {
		return res, err
	}
	if err := man8env.CheckSecretValue(name, value); err != nil {
		return res, err
	}
	if err := s.CheckMachine(); err != nil {
		return res, err
	}
	if err := s.ensureDir(); err != nil {
		return res, err
	}
	unlock, err := s.lock()
	if err != nil {
		return res, err
	}
	defer unlock()
	if res.BindAdded, err = s.ensureBind(); err != nil {
		return res, err
	}
	path := filepath.Join(s.dir, name)
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return res, fmt.Errorf("setting secret %s of machine %s: %s is not a regular file (%s); remove it first", name, s.machine, path, fi.Mode().Type())
	case err == nil:
		res.Replaced = true
	case !errors.Is(err, fs.ErrNotExist):
		return res, fmt.Errorf("setting secret %s of machine %s: %w", name, s.machine, err)
	}
	s.removeTemps(name)
	if err := fsutil.WriteFileAtomic(path, value, FileMode); err != nil {
		return res, fmt.Errorf("setting secret %s of machine %s: %w", name, s.machine, err)
	}
	return res, nil
}

// Remove deletes the named secrets. Every name must be a secret of the
// machine: if one is not, nothing is deleted and the error (wrapping
// ErrNotFound) names each missing one.
func (s Store) Remove(names ...string) error {
	var errs []error
	for _, n := range names {
		if err := man8env.CheckSecretName(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := s.CheckMachine(); err != nil {
		return err
	}
	var missing []string
	unlock, err := s.lock()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		missing = slices.Clone(names)
	case err != nil:
		return err
	default:
		defer unlock()
		for _, n := range names {
			fi, err := os.Lstat(filepath.Join(s.dir, n))
			switch {
			case errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular():
				missing = append(missing, n)
			case err != nil:
				return fmt.Errorf("removing secret %s of machine %s: %w", n, s.machine, err)
			}
		}
	}
	if len(missing) > 0 {
		noun := "secret"
		if len(missing) > 1 {
			noun = "secrets"
		}
		return fmt.Errorf("machine %s has no %s %s (%w; nothing removed)", s.machine, noun, strings.Join(missing, ", "), ErrNotFound)
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(s.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing secret %s of machine %s: %w", n, s.machine, err))
		}
		s.removeTemps(n)
	}
	return errors.Join(errs...)
}

// CheckMachine fails unless the machine's config dir, where its secrets
// live, exists; the error then wraps machine.ErrNotFound.
func (s Store) CheckMachine() error {
	fi, err := os.Stat(s.configDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("machine %s: %w (no config dir %s)", s.machine, machine.ErrNotFound, s.configDir)
	case err != nil:
		return fmt.Errorf("machine %s: %w", s.machine, err)
	case !fi.IsDir():
		return fmt.Errorf("machine %s: config dir %s is not a directory", s.machine, s.configDir)
	}
	return nil
}

// ensureDir creates the secrets dir, or makes the one there private: a
// real directory (not a symlink), mode 0700.
func (s Store) ensureDir() error {
	if err := os.Mkdir(s.dir, DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating the secrets dir of machine %s: %w", s.machine, err)
	}
	fi, err := os.Lstat(s.dir)
	if err != nil {
		return fmt.Errorf("creating the secrets dir of machine %s: %w", s.machine, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("the secrets dir of machine %s, %s, is not a directory (%s); move it away", s.machine, s.dir, fi.Mode().Type())
	}
	if fi.Mode().Perm() != DirMode {
		if err := os.Chmod(s.dir, DirMode); err != nil {
			return fmt.Errorf("making the secrets dir %s private: %w", s.dir, err)
		}
	}
	return nil
}

// lock takes an exclusive lock on the secrets dir, held by one Set or
// Remove at a time, so that two of them never both add the bind or remove
// each other's temp files. The error wraps fs.ErrNotExist when the dir is
// missing.
func (s Store) lock() (unlock func(), err error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, fmt.Errorf("locking the secrets of machine %s: %w", s.machine, err)
	}
	for {
		err = syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("locking the secrets of machine %s: %w", s.machine, err)
	}
	return func() { d.Close() }, nil
}

// removeTemps deletes what an atomic write of secret name left behind when
// it was killed (fsutil.WriteFileAtomic's ".NAME.tmp*" files): they hold a
// value and belong to nobody. Called with the lock held.
func (s Store) removeTemps(name string) {
	temps, _ := filepath.Glob(filepath.Join(s.dir, "."+name+".tmp*"))
	for _, t := range temps {
		_ = os.Remove(t)
	}
}

// BindValue is the settings' BindReadOnly= value that shows the secrets
// dir to the machine at man8env.SecretsPath, idmapped like the machine's
// other binds, so that the files are root's inside it.
func (s Store) BindValue() string {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return esc.Replace(s.dir) + ":" + man8env.SecretsPath + ":idmap"
}

// HasBind reports whether the settings bind something at /run/secrets
// (mbctl's bind, or one the user wrote).
func (s Store) HasBind() (bool, error) {
	f, err := unitfile.ReadFile(s.settings)
	if err != nil {
		return false, err
	}
	return hasBind(f), nil
}

func hasBind(f *unitfile.File) bool {
	for _, key := range []string{"Bind", "BindReadOnly"} {
		for _, v := range f.GetAll("Files", key) {
			if _, container, err := machine.ParseBind(v); err == nil && filepath.Clean(container) == man8env.SecretsPath {
				return true
			}
		}
	}
	return false
}

// ensureBind adds BindReadOnly=<secrets dir>:/run/secrets:idmap to the
// settings unless something is bound at /run/secrets already, keeping the
// file's comments, order and mode. It returns the line added.
func (s Store) ensureBind() (string, error) {
	f, err := unitfile.ReadFile(s.settings)
	if err != nil {
		return "", fmt.Errorf("binding the secrets into machine %s: %w", s.machine, err)
	}
	if hasBind(f) {
		return "", nil
	}
	fi, err := os.Stat(s.settings)
	if err != nil {
		return "", fmt.Errorf("binding the secrets into machine %s: %w", s.machine, err)
	}
	value := s.BindValue()
	if err := f.Add("Files", "BindReadOnly", value); err != nil {
		return "", fmt.Errorf("binding the secrets into machine %s: %w", s.machine, err)
	}
	if err := unitfile.WriteFileAtomic(s.settings, f, fi.Mode().Perm()); err != nil {
		return "", fmt.Errorf("binding the secrets into machine %s: %w", s.machine, err)
	}
	return "BindReadOnly=" + value, nil
}
