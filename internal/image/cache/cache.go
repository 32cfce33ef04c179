// Package cache is mbctl's image content cache: an OCI image layout
// (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
// in one directory, shared by every mbctl process on the host.
//
// # Layout
//
//	DIR/oci-layout           {"imageLayoutVersion":"1.0.0"}
//	DIR/index.json           the cached images, one descriptor per reference
//	DIR/blobs/sha256/HEX     manifests, configs and layers, named by digest
//	DIR/lock                 flock: shared by pulls, exclusive for Prune/Clear
//	DIR/index.lock           flock: serialises updates of index.json
//	DIR/index.json.corrupt-T an unusable index.json, moved aside at time T
//	                         when it was rebuilt; kept for inspection
//
// Other tools that read OCI layouts (skopeo, umoci) can read the cache.
//
// # Blobs and verification
//
// A blob is written to a temporary file in blobs/sha256 (".tmp-HEX-RANDOM"),
// hashed while it is written, and renamed to its final name only after its
// size and digest were checked and its data was synced to disk. A file under
// a digest's name is therefore complete and correct as written; later
// corruption (a bad disk, a hand-edited cache) is caught on use:
//
//   - Manifests and configs are small and always hashed when they are read
//     ([Cache.ReadBlob]) or stored again ([Cache.Ensure], what a pull does
//     with the ones it fetched): a corrupt one is deleted and reported as a
//     [*CorruptBlobError], or replaced by the fetched copy.
//   - Layers are big: [Cache.Stat] trusts a file of the right size, and the
//     pull hashes a cached layer with [Cache.VerifyBlob] when it uses it,
//     fetching it again if it was corrupt (and so deleted).
//   - [Cache.Verify] hashes every blob, for "mbctl cache verify", and with
//     repair deletes the bad ones and temporary files.
//
// An index.json that is not a valid index is moved aside and rebuilt from
// the blobs, without tags (see [Cache.Verify] and [AnnotationRecovered]),
// whenever the cache reads it, rather than failing every pull.
//
// # Concurrency
//
// Any number of processes may write blobs at the same time, including the
// same blob: each writes its own temporary file, and the renames are atomic
// and put identical content in place. A pull holds the shared lock
// ([Cache.Acquire] with shared=true) from its first blob until it has tagged
// the image, so that [Cache.Prune] and [Cache.Clear], which hold the exclusive
// lock, never remove blobs that a pull has written but not yet tagged.
// [Cache.Tag], [Cache.Touch] and [Cache.Untag] update index.json under a short
// lock of their own and replace it atomically, so concurrent updates are
// neither lost nor seen half-written. Lock order: the cache lock before the
// index lock, never the other way round.
package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/fsutil"
)

const (
	layoutFile   = "oci-layout"
	indexFile    = "index.json"
	lockFile     = "lock"
	indexLock    = "index.lock"
	blobsDir     = "blobs"
	tmpPrefix    = ".tmp-"
	layoutJSON   = `{"imageLayoutVersion":"1.0.0"}` + "\n"
	dirPerm      = 0o755
	filePerm     = 0o644
	lockPollTime = 50 * time.Millisecond
)

// Cache is an open content cache. Its methods may be called from several
// goroutines at once.
type Cache struct {
	dir string
	// now returns the current time; tests replace it.
	now func() time.Time
	// noSync skips the fdatasync before a blob is renamed into place; only
	// the benchmark sets it, to measure what the sync costs.
	noSync bool
	// lockWaiting, if set, is called when Acquire finds the lock taken and
	// starts to wait; tests wait on it instead of sleeping.
	lockWaiting func()
	// log receives what the cache repairs on its own; never nil.
	log *slog.Logger
}

// Options configure [OpenWith].
type Options struct {
	// Log receives a warning for each repair the cache makes on its own: an
	// index.json rebuilt, a corrupt blob replaced by [Cache.Ensure]. Nil
	// discards them.
	Log *slog.Logger
}

// Open opens the cache in dir with the default [Options]; see [OpenWith].
func Open(dir string) (*Cache, error) { return OpenWith(dir, Options{}) }

// OpenWith opens the cache in dir, creating dir, oci-layout, blobs/sha256 and
// an empty index.json where they are missing. Directories are created with
// mode 0755 and files with 0644: the system cache is owned by root and
// readable by everyone.
func OpenWith(dir string, opts Options) (*Cache, error) {
	c := &Cache{dir: dir, now: time.Now, log: opts.Log}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(dir), dirPerm); err != nil {
		return nil, fmt.Errorf("creating cache %s: %w", dir, err)
	}
	for _, p := range []string{dir, filepath.Join(dir, blobsDir), filepath.Join(dir, blobsDir, "sha256")} {
		if err := mkdir(p); err != nil {
			return nil, fmt.Errorf("creating cache %s: %w", dir, err)
		}
	}
	if err := writeIfMissing(filepath.Join(dir, layoutFile), []byte(layoutJSON)); err != nil {
		return nil, err
	}
	if _, err := os.Stat(c.indexPath()); err == nil {
		return c, nil
	}
	// Create index.json under the index lock, so that a Tag of another
	// process that created it a moment ago is not overwritten.
	err := c.updateIndex(func(*v1.IndexManifest) (bool, error) { return false, nil })
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Dir returns the directory of the cache.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) indexPath() string { return filepath.Join(c.dir, indexFile) }

// mkdir creates the directory p with mode 0755 regardless of the umask, or
// leaves it as it is if it exists.
func mkdir(p string) error {
	err := os.Mkdir(p, dirPerm)
	if errors.Is(err, fs.ErrExist) {
		if fi, serr := os.Stat(p); serr == nil && fi.IsDir() {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	return os.Chmod(p, dirPerm)
}

// writeIfMissing creates path with data unless it exists. Concurrent callers
// are safe: the file appears atomically with its whole content.
func writeIfMissing(path string, data []byte) error {
	_, err := os.Stat(path)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	if err := fsutil.WriteFileAtomic(path, data, filePerm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
