package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// ErrDigestMismatch is wrapped by the errors returned when a blob's content
// does not hash to its digest.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrSizeMismatch is wrapped by the errors returned when a blob does not
// have the size its descriptor says.
var ErrSizeMismatch = errors.New("size mismatch")

// ErrInvalidDigest is wrapped by the errors returned for a digest the cache
// cannot store: anything but sha256 with 64 lower-case hex digits.
var ErrInvalidDigest = errors.New("invalid digest")

// validDigest reports whether d is a sha256 digest in canonical form, the
// only kind the cache writes. Checking it also keeps a digest from an
// untrusted manifest from naming a path outside blobs/.
func validDigest(d v1.Hash) bool {
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return false
	}
	for i := 0; i < len(d.Hex); i++ {
		b := d.Hex[i]
		if (b < '0' || b > '9') && (b < 'a' || b > 'f') {
			return false
		}
	}
	return true
}

func checkDigest(d v1.Hash) error {
	if !validDigest(d) {
		return fmt.Errorf("%w: %q", ErrInvalidDigest, d.String())
	}
	return nil
}

// Path returns the file of the blob d (DIR/blobs/sha256/HEX), whether or not
// it exists. For a digest that is not a canonical sha256 digest it returns "".
func (c *Cache) Path(d v1.Hash) string {
	if !validDigest(d) {
		return ""
	}
	return filepath.Join(c.dir, blobsDir, d.Algorithm, d.Hex)
}

func (c *Cache) blobDir() string { return filepath.Join(c.dir, blobsDir, "sha256") }

// Stat reports whether the blob d is in the cache with the given size
// (a negative size accepts any). A blob is renamed into place only after its
// digest was verified and its data synced, so a file of the right size is
// trusted without hashing it; see [Cache.VerifyBlob] for detecting
// corruption that happened later, and [Cache.ReadBlob] and [Cache.Ensure],
// which always hash the small blobs (manifests, configs) they handle.
//
// A file of a different size is hashed: if its content is corrupt it is
// deleted, so that the caller fetches the blob again; if it is correct (the
// caller's size is wrong) it is kept. Either way Stat returns false.
func (c *Cache) Stat(d v1.Hash, size int64) bool {
	p := c.Path(d)
	if p == "" {
		return false
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	if size < 0 || fi.Size() == size {
		return true
	}
	_, _ = c.checkBlob(context.Background(), d, -1, true) // deletes the file if it is corrupt
	return false
}

// CorruptBlobError reports a cached blob whose content does not hash to its
// digest: it was damaged after it was written (a bad disk, a hand-edited
// cache). [Cache.ReadBlob], [Cache.VerifyBlob] and [Cache.Stat] delete such
// a blob (Removed), so the remedy is to fetch it again and write it with
// [Cache.Create], [Cache.WriteFrom] or [Cache.Ensure]; branch on it with
// errors.AsType[*CorruptBlobError]. It wraps [ErrDigestMismatch], and
// [ErrSizeMismatch] as well when the size differs from the expected one.
type CorruptBlobError struct {
	// Digest names the blob: the digest its content should have.
	Digest v1.Hash
	// Path is its file.
	Path string
	// Size is the size of the file found; WantSize the size expected, or
	// -1 when the caller did not say.
	Size, WantSize int64
	// Actual is what the content hashes to.
	Actual v1.Hash
	// Removed says whether the file was deleted.
	Removed bool
}

func (e *CorruptBlobError) Error() string {
	msg := fmt.Sprintf("%s is corrupt: its content hashes to %s", e.Path, e.Actual)
	if e.WantSize >= 0 && e.Size != e.WantSize {
		msg += fmt.Sprintf(" and has %d bytes, want %d", e.Size, e.WantSize)
	}
	if e.Removed {
		return msg + " (deleted: fetch the blob again)"
	}
	return msg + " (remove it, e.g. with mbctl cache verify --repair, and fetch the blob again)"
}

// Unwrap returns ErrDigestMismatch, and ErrSizeMismatch if the size is
// wrong too.
func (e *CorruptBlobError) Unwrap() []error {
	if e.WantSize >= 0 && e.Size != e.WantSize {
		return []error{ErrDigestMismatch, ErrSizeMismatch}
	}
	return []error{ErrDigestMismatch}
}

// VerifyBlob hashes the blob d and checks its size (a negative size skips
// the size check). A blob whose content does not hash to d is deleted and a
// [*CorruptBlobError] is returned; a blob that hashes correctly but has
// another size than the caller said is kept (the caller's size is wrong)
// and gives an error wrapping [ErrSizeMismatch]; a missing blob gives an
// error wrapping [fs.ErrNotExist]. It stops with ctx's error when ctx is
// done.
//
// Policy: blobs are verified when they are written, so readers of big
// blobs (layers) normally rely on [Cache.Stat] and hash only when they use
// the blob, as the pull does. [Cache.Verify] checks the whole cache.
func (c *Cache) VerifyBlob(ctx context.Context, d v1.Hash, size int64) error {
	_, err := c.checkBlob(ctx, d, size, true)
	return err
}

// checkBlob hashes the file of blob d and compares it with d and, if want
// is not negative, its size with want. It returns the file's info (nil if
// it could not be opened) and nil, a *CorruptBlobError (the file is deleted
// first if remove is set), or an error that says why it could not check.
func (c *Cache) checkBlob(ctx context.Context, d v1.Hash, want int64, remove bool) (fs.FileInfo, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	p := c.Path(d)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("verifying blob %s: %w", d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("verifying blob %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		return fi, fmt.Errorf("verifying blob %s: %s is not a regular file", d, p)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20)); err != nil {
		return fi, fmt.Errorf("verifying blob %s: reading %s: %w", d, p, err)
	}
	actual := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if actual == d {
		if want >= 0 && fi.Size() != want {
			return fi, fmt.Errorf("verifying blob %s: %w: the blob is intact but has %d bytes, the caller expects %d", d, ErrSizeMismatch, fi.Size(), want)
		}
		return fi, nil
	}
	cerr := &CorruptBlobError{Digest: d, Path: p, Size: fi.Size(), WantSize: want, Actual: actual}
	if remove {
		cerr.Removed = c.removeCorrupt(p, fi)
	}
	return fi, fmt.Errorf("verifying blob %s: %w", d, cerr)
}

// removeCorrupt deletes the blob file p if it is still the file fi that was
// found corrupt, and not a good copy that another process has renamed over
// it since, and reports whether it did. (A small window remains between the
// check and the unlink; the worst it can do is delete a good blob, which is
// then fetched again.)
func (c *Cache) removeCorrupt(p string, fi fs.FileInfo) bool {
	cur, err := os.Lstat(p)
	if err != nil || !os.SameFile(fi, cur) {
		return false
	}
	return os.Remove(p) == nil
}

// ReadBlob returns the content of the blob d after checking its digest. It
// is meant for manifests and configs, which are small, and always hashes
// them: a corrupt blob is deleted and a [*CorruptBlobError] is returned, so
// that the caller can fetch it again (and store it with [Cache.Ensure]); a
// missing one gives an error wrapping [fs.ErrNotExist].
func (c *Cache) ReadBlob(d v1.Hash) ([]byte, error) {
	return c.readBlob(d, true)
}

// readBlob is ReadBlob; it deletes a corrupt blob only if remove is set.
func (c *Cache) readBlob(d v1.Hash, remove bool) ([]byte, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	p := c.Path(d)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading blob %s: %s is not a regular file", d, p)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	if actual := digestOf(data); actual != d {
		cerr := &CorruptBlobError{Digest: d, Path: p, Size: fi.Size(), WantSize: -1, Actual: actual}
		if remove {
			cerr.Removed = c.removeCorrupt(p, fi)
		}
		return nil, fmt.Errorf("reading blob %s: %w", d, cerr)
	}
	return data, nil
}

// Ensure makes sure the cache holds data as the blob d, for small blobs that
// the caller has in memory and fetched from their source (a pull's manifest
// and config). Unlike [Cache.Stat], which trusts a file of the right size, it
// hashes the cached copy: an intact copy is kept, a missing one is written,
// and a corrupt one (which the Cache's logger is told about) is deleted and
// replaced, so that a pull repairs what it finds damaged. It reports whether
// it wrote data. data must hash to d, or an error wrapping
// [ErrDigestMismatch] is returned and nothing is written.
func (c *Cache) Ensure(ctx context.Context, d v1.Hash, data []byte) (stored bool, err error) {
	if err := checkDigest(d); err != nil {
		return false, err
	}
	if actual := digestOf(data); actual != d {
		return false, fmt.Errorf("storing blob %s: %w: the data to store hashes to %s", d, ErrDigestMismatch, actual)
	}
	p := c.Path(d)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		// Unusable either way: a fresh copy renamed over it may still work.
		c.log.Warn("cached blob cannot be checked; writing it again", "digest", d, "err", err)
	case !fi.Mode().IsRegular() || fi.Size() != int64(len(data)):
		// data is the blob, so a file of another size is corrupt.
		c.log.Warn("cached blob has the wrong size; writing it again", "digest", d, "path", p, "size", fi.Size(), "want", len(data))
	default:
		_, rerr := c.readBlob(d, true)
		if rerr == nil {
			return false, nil
		}
		c.log.Warn("cached blob is corrupt; writing it again", "digest", d, "err", rerr)
	}
	if err := c.WriteFrom(ctx, d, int64(len(data)), bytes.NewReader(data)); err != nil {
		return false, err
	}
	return true, nil
}

// digestOf returns the sha256 digest of data.
func digestOf(data []byte) v1.Hash {
	sum := sha256.Sum256(data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// BlobWriter writes one blob into the cache. It is an [io.Writer]: the
// content goes to a temporary file and is hashed on the way. [BlobWriter.Commit]
// puts the blob in place once its size and digest are right;
// [BlobWriter.Abort] throws it away. Write, Commit and Abort must not be
// called concurrently.
//
// The usual pattern:
//
//	w, err := c.Create(d, size)
//	if err != nil { ... }
//	defer w.Abort() // no-op after a successful Commit
//	if _, err := io.Copy(w, r); err != nil { ... }
//	return w.Commit()
type BlobWriter struct {
	c       *Cache
	digest  v1.Hash
	size    int64
	f       *os.File
	h       hash.Hash
	written int64
	err     error // first write error; Commit returns it
	done    bool
}

// Create starts writing the blob d of the given size (a negative size is
// not checked). The temporary file is DIR/blobs/sha256/.tmp-HEX-RANDOM;
// several writers of the same blob, in one process or several, do not
// disturb each other.
//
// Create does not check whether the blob is already present (use
// [Cache.Stat]). The caller should hold the shared cache lock
// ([Cache.Acquire]) until the image that uses the blob is tagged, or Prune
// may delete it in between.
func (c *Cache) Create(d v1.Hash, size int64) (*BlobWriter, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(c.blobDir(), tmpPrefix+d.Hex+"-*")
	if err != nil {
		return nil, fmt.Errorf("creating blob %s: %w", d, err)
	}
	return &BlobWriter{c: c, digest: d, size: size, f: f, h: sha256.New()}, nil
}

// CreateVerified is Create for content whose digest the caller verifies as
// it reads it (go-containerregistry's remote layers do: their last Read
// fails on a mismatch). Commit then checks the size only, so the bytes are
// not hashed twice. The caller must Abort, never Commit, after its reader
// reported an error.
func (c *Cache) CreateVerified(d v1.Hash, size int64) (*BlobWriter, error) {
	w, err := c.Create(d, size)
	if err != nil {
		return nil, err
	}
	w.h = nil
	return w, nil
}

// TempName is the temporary file being written. A reader may follow it
// while it grows: Commit renames it and Abort removes it, which leaves an
// open descriptor readable.
func (w *BlobWriter) TempName() string { return w.f.Name() }

// Write writes p to the blob. Writing more bytes than the blob's size is an
// error wrapping [ErrSizeMismatch].
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("writing blob %s: %w", w.digest, os.ErrClosed)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.size >= 0 && w.written+int64(len(p)) > w.size {
		w.err = fmt.Errorf("writing blob %s: %w: more than the expected %d bytes", w.digest, ErrSizeMismatch, w.size)
		return 0, w.err
	}
	m, err := w.f.Write(p)
	if w.h != nil {
		w.h.Write(p[:m])
	}
	w.written += int64(m)
	if err != nil {
		w.err = fmt.Errorf("writing blob %s: %w", w.digest, err)
		return m, w.err
	}
	return m, nil
}

// Commit checks the blob's size and digest, syncs its data to disk and
// renames it to its final name. If another writer has put the same blob in
// place meanwhile, the rename replaces it with identical content, which is
// success. On any error the temporary file is removed and nothing is left
// behind; a wrong digest gives an error wrapping [ErrDigestMismatch] that
// names the expected and the actual digest.
func (w *BlobWriter) Commit() (err error) {
	if w.done {
		return fmt.Errorf("committing blob %s: %w", w.digest, os.ErrClosed)
	}
	w.done = true
	tmp := w.f.Name()
	defer func() {
		if err != nil {
			_ = w.f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if w.err != nil {
		return w.err
	}
	if n := w.written; w.size >= 0 && n != w.size {
		return fmt.Errorf("committing blob %s: %w: got %d bytes, want %d", w.digest, ErrSizeMismatch, n, w.size)
	}
	if w.h != nil {
		if got := hex.EncodeToString(w.h.Sum(nil)); got != w.digest.Hex {
			return fmt.Errorf("committing blob %s: %w: content hashes to sha256:%s", w.digest, ErrDigestMismatch, got)
		}
	}
	if !w.c.noSync {
		// The data must be on disk before the name is: otherwise a crash
		// could leave a complete-looking but empty or partial file under the
		// digest's name, which Stat would trust.
		if err := fdatasync(w.f); err != nil {
			return fmt.Errorf("committing blob %s: syncing %s: %w", w.digest, tmp, err)
		}
	}
	if err := w.f.Chmod(filePerm); err != nil {
		return fmt.Errorf("committing blob %s: %w", w.digest, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("committing blob %s: %w", w.digest, err)
	}
	// The directory is not synced: if a crash loses the rename, the blob is
	// simply missing and is fetched again.
	if err := os.Rename(tmp, w.c.Path(w.digest)); err != nil {
		return fmt.Errorf("committing blob %s: %w", w.digest, err)
	}
	return nil
}

// Abort removes the temporary file. It does nothing after Commit or a
// previous Abort, so it can be deferred.
func (w *BlobWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	cerr := w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil {
		return fmt.Errorf("aborting blob %s: %w", w.digest, err)
	}
	if cerr != nil {
		return fmt.Errorf("aborting blob %s: %w", w.digest, cerr)
	}
	return nil
}

func fdatasync(f *os.File) error {
	return onFD(f, unix.Fdatasync)
}

// WriteFrom writes the blob d of the given size from r and commits it. It
// stops with ctx's error when ctx is cancelled. To follow its progress, wrap
// r in a reader that counts. Like [Cache.Create] it writes the blob even if
// it is already present.
func (c *Cache) WriteFrom(ctx context.Context, d v1.Hash, size int64, r io.Reader) error {
	w, err := c.Create(d, size)
	if err != nil {
		return err
	}
	defer w.Abort()
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(w, ctxReader{ctx, r}, buf); err != nil {
		if w.err != nil {
			return w.err // already names the blob
		}
		return fmt.Errorf("writing blob %s: %w", d, err)
	}
	return w.Commit()
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
