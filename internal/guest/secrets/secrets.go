// Package secrets reads a machine's secrets for its app's environment: the
// files of the dir that mbctl binds read-only at /run/secrets
// (man8env.SecretsPath), one per secret, each named like the variable the
// app gets it as. Values are never logged; names are.
package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// Read returns the secrets in dir as environment assignments
// ("NAME=VALUE"), sorted by name. A missing dir holds none. Entries that
// cannot be a secret are skipped with a line on log naming them and why:
// names that are not environment variable names or are Man8S's own
// (man8env.CheckSecretName), anything but a regular file, values over
// man8env.MaxSecretSize or holding a NUL. An error reading the dir or a
// file is returned: the app would start without a secret it was given.
func Read(dir string, log *slog.Logger) ([]string, error) {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading secrets: %w", err)
	case !fi.IsDir():
		log.Warn(fmt.Sprintf("%s is not a directory (%s): no secrets", dir, fi.Mode().Type()))
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading secrets: %w", err)
	}
	var env []string
	for _, e := range ents {
		name := e.Name()
		if err := man8env.CheckSecretName(name); err != nil {
			log.Warn(fmt.Sprintf("skipped: %v", err))
			continue
		}
		value, err := readFile(filepath.Join(dir, name))
		var skip *skipError
		switch {
		case errors.As(err, &skip):
			log.Warn(fmt.Sprintf("skipped secret %s: %v", name, skip.why))
			continue
		case err != nil:
			return nil, fmt.Errorf("reading secret %s: %w", name, err)
		}
		if len(value) > man8env.MaxSecretSize {
			log.Warn(fmt.Sprintf("skipped secret %s: larger than the limit of %d bytes", name, man8env.MaxSecretSize))
			continue
		}
		if err := man8env.CheckSecretValue(name, value); err != nil {
			log.Warn(fmt.Sprintf("skipped %v", err))
			continue
		}
		env = append(env, name+"="+string(value))
	}
	return env, nil // ReadDir sorts by name
}

// skipError is an entry that is not a secret file.
type skipError struct{ why string }

func (e *skipError) Error() string { return e.why }

// readFile reads the regular file at path (not through a symlink), at most
// one byte more than a secret may have.
func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, &skipError{"a symbolic link, not a regular file"}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &skipError{fmt.Sprintf("not a regular file (%s)", fi.Mode().Type())}
	}
	return io.ReadAll(io.LimitReader(f, man8env.MaxSecretSize+1))
}
