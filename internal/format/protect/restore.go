package protect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/man8s/mbctl/internal/fsutil"
)

// Stats counts what Restore copied.
type Stats = fsutil.CopyStats

// Restore copies the content of root/run.man8sprotected into root/run and of
// root/tmp.man8sprotected into root/tmp (root is "/" inside the machine). It preserves
// owners, modes (setuid, setgid, sticky), symlinks (targets verbatim), hard links (as hard
// links within one directory), FIFOs and device nodes, modification times and xattrs
// (xattrs the target file system refuses are dropped). Sockets are skipped.
//
// The target is expected to be a fresh tmpfs: entries already there are replaced, except
// directories, which are merged and keep their own owner and mode. Symlinks are never
// followed: an entry in the way that is a symlink is replaced, never written through.
// A missing protected directory is not an error. The protected directories are kept, so
// that the next boot restores them again. Failures of single entries are collected and
// returned together; the copy goes on.
func Restore(root string) (Stats, error) {
	var total Stats
	var errs []error
	for _, d := range dirs() {
		src := filepath.Join(root, d.name+Suffix)
		dst := filepath.Join(root, d.name)
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err == nil {
			var dfi fs.FileInfo
			if dfi, err = os.Lstat(dst); err == nil && !dfi.IsDir() {
				err = fmt.Errorf("%s is not a directory", dst)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", src, err))
			continue
		}
		st, err := fsutil.CopyTree(src, dst)
		total.Add(st)
		if err != nil {
			errs = append(errs, fmt.Errorf("restoring %s into %s: %w", src, dst, err))
		}
	}
	return total, errors.Join(errs...)
}
