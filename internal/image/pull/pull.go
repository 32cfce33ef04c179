// Package pull turns a resolved image into a root filesystem: it fetches the
// layer blobs into the content cache in parallel and applies each layer as
// soon as it and the layers before it are there, decompressing on one core
// while the unpacker writes files on the other. Every blob is verified once,
// on its way into the cache (or, for a blob already cached, before use), and
// every layer's uncompressed content against the config's DiffID.
package pull

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/image/unpack"
)

// DefaultJobs is how many layers download at once unless Options.Jobs says.
const DefaultJobs = 4

// copyBufSize is the buffer a download is copied into the cache with.
const copyBufSize = 1 << 20

// DefaultMaxLayerSize bounds one layer's uncompressed size.
const DefaultMaxLayerSize = 256 << 30

// Options tune Unpack and Download. Zero values get the defaults.
type Options struct {
	// Jobs is the number of parallel layer downloads (default DefaultJobs).
	Jobs int
	// MaxLayerSize bounds a layer's uncompressed size (default
	// DefaultMaxLayerSize).
	MaxLayerSize int64
	// Progress receives progress events; nil means none.
	Progress Progress
	// Log receives debug messages; nil means none.
	Log *slog.Logger
	// JournalDir, if set, is where Download journals its staging dir, so
	// that a run killed mid-way is taken back by journal.Recover.
	JournalDir string
	// BeforeStep, if set, runs before Download's steps ("staging",
	// "unpack", "rename"); an error aborts there (tests, fault hooks).
	BeforeStep func(step string) error
	// OnTop tells Unpack that dir holds the image's earlier layers
	// already (a snapshot of them): the layers go on top, and dir is never
	// cleared to start over, so cached blobs are verified before use and
	// no layer is read ahead to skip what the next one deletes.
	OnTop bool
}

// Progress receives events from a pull. Fetching is called from several
// goroutines at once; the others from one.
type Progress interface {
	// Begin is called once with the endpoint the layers come from (see
	// registry.Image.Source) and the layers to fetch and apply.
	Begin(source string, layers []registry.Layer)
	// Cached reports that layer i was already in the cache.
	Cached(i int)
	// Fetching reports n more bytes of layer i downloaded.
	Fetching(i int, n int64)
	// Fetched reports that layer i is downloaded and verified.
	Fetched(i int)
	// Applying reports that the unpack of layer i starts; size is the
	// length of its tar stream when the blob tells it (gzip's trailer, an
	// uncompressed layer), else 0.
	Applying(i int, size int64)
	// Unpacking reports n more bytes of layer i's tar stream applied.
	Unpacking(i int, n int64)
	// Applied reports that layer i is unpacked.
	Applied(i int, stats unpack.Stats)
}

// Result describes a finished pull.
type Result struct {
	// Ref is the reference pulled, Digest its image manifest digest,
	// Source the endpoint that served it.
	Ref    string
	Digest v1.Hash
	Source string
	// Layers is the number of layers; Fetched of them were downloaded,
	// FetchedBytes in all; the others came from the cache.
	Layers       int
	Fetched      int
	FetchedBytes int64
	// Stats sums what the layers put into the root filesystem.
	Stats unpack.Stats
}

// Unpack applies im's layers into dir, an existing empty directory, using
// and filling the content cache c.
func Unpack(ctx context.Context, c *cache.Cache, im *registry.Image, dir string, opts Options) (*Result, error) {
	opts = opts.withDefaults()
	release, err := c.Acquire(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("locking the image cache %s: %w", c.Dir(), err)
	}
	defer release()

	if err := storeMetadata(ctx, c, im); err != nil {
		return nil, err
	}
	res := &Result{Ref: registry.DisplayName(im.Ref), Digest: im.Digest, Source: im.Source, Layers: len(im.Layers)}
	opts.Progress.Begin(im.Source, im.Layers)
	var n counts
	err = pullLayers(ctx, c, im, dir, opts, &res.Stats, &n, opts.OnTop)
	if errors.Is(err, errCorruptCached) && !opts.OnTop {
		// A cached blob was used at once, and found corrupt meanwhile
		// (and deleted): start over, downloading it again.
		res.Stats = unpack.Stats{}
		if err = clearDir(dir); err == nil {
			err = pullLayers(ctx, c, im, dir, opts, &res.Stats, &n, true)
		}
	}
	if err != nil {
		return nil, err
	}
	res.Fetched, res.FetchedBytes = int(n.fetched.Load()), n.fetchedBytes.Load()

	desc := v1.Descriptor{MediaType: im.MediaType, Digest: im.Digest, Size: int64(len(im.RawManifest))}
	if err := c.Tag(res.Ref, desc); err != nil {
		return nil, fmt.Errorf("recording %s in the image cache: %w", res.Ref, err)
	}
	return res, nil
}

// counts are the downloads of a pull, over its attempts.
type counts struct {
	fetched, fetchedBytes atomic.Int64
}

// errCorruptCached reports a cached blob that was found corrupt after the
// applier had started on it.
var errCorruptCached = errors.New("cached layer blob is corrupt")

// pullLayers fetches the layers into the cache and applies them into dir,
// adding to total and n. With verifyFirst, a cached blob is hashed before
// it is used, and downloaded again if it is corrupt; without, it is used at
// once and hashed meanwhile (the DiffID check guards what is unpacked),
// and a corrupt one fails the pull with errCorruptCached.
func pullLayers(ctx context.Context, c *cache.Cache, im *registry.Image, dir string, opts Options, total *unpack.Stats, n *counts, verifyFirst bool) error {
	// Downloads run in the background, at most opts.Jobs at a time, each
	// into the cache; the applier takes the layers in order and starts on
	// each as soon as its download has started. A failed download cancels
	// the applier and a failed apply the downloads.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	blobs := make([]*blob, len(im.Layers))
	for i := range blobs {
		blobs[i] = newBlob()
		defer blobs[i].close()
	}
	fetch, fctx := errgroup.WithContext(ctx)
	fetch.SetLimit(opts.Jobs)
	launched := make(chan struct{})
	var corrupt atomic.Bool // whatever error the group returns first
	go func() {
		defer close(launched)
		for i, l := range im.Layers {
			fetch.Go(func() error {
				size, err := ensureBlob(fctx, c, im, l, i, blobs[i], opts, verifyFirst)
				if errors.Is(err, errCorruptCached) {
					corrupt.Store(true)
				}
				if err != nil {
					err = fmt.Errorf("fetching layer %d/%d %s: %w", i+1, len(im.Layers), l.Digest, err)
					blobs[i].failed(err)
					return err
				}
				if size > 0 {
					n.fetched.Add(1)
					n.fetchedBytes.Add(size)
				}
				return nil
			})
		}
	}()
	for _, b := range blobs {
		defer b.failOnDone(fctx)()
	}

	applyErr := applyAll(fctx, im, dir, blobs, opts, total)
	if applyErr != nil {
		cancel(applyErr)
	}
	<-launched
	fetchErr := fetch.Wait()
	switch {
	case corrupt.Load():
		// Whatever the applier made of the corrupt blob, and whatever
		// failed when it stopped: start over.
		return errCorruptCached
	case applyErr != nil && !errors.Is(applyErr, context.Canceled):
		return applyErr
	case fetchErr != nil:
		// A failed download cancelled the applier: report the cause.
		return fetchErr
	}
	return applyErr
}

// Download unpacks im into dest, which must not exist. The work happens in a
// staging directory next to dest that is renamed into place at the end; on
// any failure or cancellation it is removed and dest never appears.
func Download(ctx context.Context, c *cache.Cache, im *registry.Image, dest string, opts Options) (res *Result, err error) {
	dest = filepath.Clean(dest)
	if _, err := os.Lstat(dest); err == nil {
		return nil, fmt.Errorf("%s already exists: choose a new path or remove it first", dest)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	parent := filepath.Dir(dest)
	if fi, err := os.Stat(parent); err != nil {
		return nil, fmt.Errorf("the directory for %s: %w", dest, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", parent)
	}
	before := func(step string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opts.BeforeStep != nil {
			return opts.BeforeStep(step)
		}
		return nil
	}
	if err := before("staging"); err != nil {
		return nil, err
	}
	prefix := "." + filepath.Base(dest) + ".mbctl-staging-"
	var staging string
	if opts.JournalDir != "" {
		// (No := here: the deferred func must see the named result err.)
		j, jerr := journal.Begin(opts.JournalDir, "oci download "+dest)
		if jerr != nil {
			return nil, jerr
		}
		defer func() {
			if err != nil {
				if rerr := j.Rollback(); rerr != nil {
					err = errors.Join(err, fmt.Errorf("removing the staging directory (the next mbctl run tries again): %w", rerr))
				}
			} else if cerr := j.Commit(); cerr != nil {
				err = fmt.Errorf("unpacked into %s, but its journal %s stayed: %w", dest, j.Path(), cerr)
			}
		}()
		if staging, err = j.MkdirUnique(parent, prefix); err != nil {
			return nil, fmt.Errorf("creating a staging directory next to %s: %w", dest, err)
		}
		if err := j.Log(journal.Record{Op: journal.OpRename, From: staging, Path: dest}); err != nil {
			return nil, err
		}
	} else {
		if staging, err = os.MkdirTemp(parent, prefix); err != nil {
			return nil, fmt.Errorf("creating a staging directory next to %s: %w", dest, err)
		}
		defer func() {
			if err != nil {
				if rmErr := os.RemoveAll(staging); rmErr != nil {
					err = errors.Join(err, fmt.Errorf("removing staging directory %s: %w", staging, rmErr))
				}
			}
		}()
	}
	if err := before("unpack"); err != nil {
		return nil, err
	}
	// The staging dir stays 0700 (MkdirTemp's mode) while it fills, so no
	// local user reaches a setuid binary or device node of a half-written
	// image; the finished root filesystem gets the usual 0755.
	if res, err = Unpack(ctx, c, im, staging, opts); err != nil {
		return nil, err
	}
	if err := before("rename"); err != nil {
		return nil, err
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE); err != nil {
		return nil, fmt.Errorf("moving the unpacked image to %s: %w", dest, err)
	}
	return res, nil
}

func (o Options) withDefaults() Options {
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	if o.MaxLayerSize <= 0 {
		o.MaxLayerSize = DefaultMaxLayerSize
	}
	if o.Progress == nil {
		o.Progress = NopProgress{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// storeMetadata puts the manifest and config into the cache, so that the
// cached image is complete and `mbctl cache list` can describe it.
func storeMetadata(ctx context.Context, c *cache.Cache, im *registry.Image) error {
	for _, b := range []struct {
		what   string
		digest v1.Hash
		data   []byte
	}{
		{"manifest", im.Digest, im.RawManifest},
		{"config", im.Manifest.Config.Digest, im.RawConfig},
	} {
		// Ensure hashes a cached copy and replaces it if it is corrupt.
		if _, err := c.Ensure(ctx, b.digest, b.data); err != nil {
			return fmt.Errorf("storing the image %s in the cache: %w", b.what, err)
		}
	}
	return nil
}

// ensureBlob makes layer l's blob present and verified in the cache,
// reporting its progress to b, and returns how many bytes it downloaded
// (0 when it was cached).
func ensureBlob(ctx context.Context, c *cache.Cache, im *registry.Image, l registry.Layer, i int, b *blob, opts Options, verifyFirst bool) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cached := c.Stat(l.Digest, l.Size)
	if cached && !verifyFirst {
		// Used at once, hashed meanwhile: decompressing does not wait
		// for the hash. A corrupt blob is deleted by VerifyBlob, and the
		// pull starts over (see pullLayers).
		b.ready(c.Path(l.Digest))
		if err := c.VerifyBlob(ctx, l.Digest, l.Size); err != nil {
			opts.Log.Warn("cached layer blob is corrupt; the pull starts over and downloads it again", "digest", l.Digest, "err", err)
			return 0, fmt.Errorf("%w: %w", errCorruptCached, err)
		}
		opts.Progress.Cached(i)
		return 0, nil
	}
	if cached {
		// Cached blobs are re-hashed before use (this runs while earlier
		// layers are being applied); a corrupt one is deleted by VerifyBlob
		// and downloaded again below.
		err := c.VerifyBlob(ctx, l.Digest, l.Size)
		if err == nil {
			opts.Progress.Cached(i)
			b.ready(c.Path(l.Digest))
			return 0, nil
		}
		opts.Log.Warn("cached layer blob is corrupt; downloading it again", "digest", l.Digest, "err", err)
	}
	start := time.Now()
	rc, err := im.OpenLayer(ctx, l)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	// OpenLayer's stream checks the digest itself (its last Read fails on
	// a mismatch), so the cache does not hash it again.
	w, err := c.CreateVerified(l.Digest, l.Size)
	if err != nil {
		return 0, err
	}
	if err := b.started(w.TempName()); err != nil {
		return 0, errors.Join(err, w.Abort())
	}
	// A big buffer: fewer reads and writes, and fewer wake-ups of the
	// applier following the file.
	n, err := io.CopyBuffer(growWriter{w: w, b: b}, &progressReader{ctx: ctx, r: rc, i: i, p: opts.Progress}, make([]byte, copyBufSize))
	if err != nil {
		return 0, errors.Join(err, w.Abort())
	}
	if err := w.Commit(); err != nil {
		return 0, err
	}
	b.ready(c.Path(l.Digest))
	opts.Log.Debug("layer downloaded", "layer", i+1, "digest", l.Digest, "bytes", n, "took", time.Since(start))
	opts.Progress.Fetched(i)
	return n, nil
}

// Lookahead: before a layer is applied, the next one is read if it is small
// and downloaded already, so that what it deletes is not created (see
// unpack.Doomed); it is then applied from memory.
const (
	maxLookaheadBlob = 1 << 20
	maxLookaheadTar  = 16 << 20
)

// scanNext reads layer l (blob b) if it qualifies for the lookahead, and
// returns what it deletes and its tar stream (both nil if not read).
func scanNext(ctx context.Context, l registry.Layer, b *blob, maxSize int64) (*unpack.Doomed, []byte) {
	if l.Size > maxLookaheadBlob {
		return nil, nil
	}
	path := b.readyPath()
	if path == "" {
		return nil, nil // not waited for: the lookahead must not delay anything
	}
	t := readSmall(path, l.Compression, min(maxLookaheadTar, maxSize))
	if t == nil {
		return nil, nil
	}
	d, err := unpack.ScanDoomed(ctx, bytes.NewReader(t))
	if err != nil {
		return nil, t // applying it reports the error
	}
	return d, t
}

// applyAll applies the layers with lookahead (see applyLayers), and if a
// hard link needs a file that was skipped because the next layer deletes
// it (rare), starts over without.
func applyAll(ctx context.Context, im *registry.Image, dir string, blobs []*blob, opts Options, total *unpack.Stats) error {
	if opts.OnTop {
		return applyLayers(ctx, im, dir, blobs, opts, total, false)
	}
	err := applyLayers(ctx, im, dir, blobs, opts, total, true)
	if !errors.Is(err, unpack.ErrSkippedLinkTarget) {
		return err
	}
	opts.Log.Debug("applying the layers again, creating what the next layer deletes", "err", err)
	*total = unpack.Stats{}
	if err := clearDir(dir); err != nil {
		return fmt.Errorf("starting over in %s: %w", dir, err)
	}
	return applyLayers(ctx, im, dir, blobs, opts, total, false)
}

// clearDir removes everything in dir, never following a symbolic link.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// applyLayers applies the layers in order. The next layer's stream is
// opened while the current one is applied, so its decompression starts
// early, on whatever CPU time the current layer leaves: into a read-ahead
// that spills to an unnamed temporary file in dir (see readAhead), so it
// goes on at full speed however long the current layer takes. The
// decompression of a big layer is the longest single-threaded task of a
// pull; this way it overlaps with the layers before it.
//
// With lookahead, a small next layer is read first (see scanNext), and
// what it deletes is not created; Apply then fails with
// unpack.ErrSkippedLinkTarget if a hard link needs a skipped file.
func applyLayers(ctx context.Context, im *registry.Image, dir string, blobs []*blob, opts Options, total *unpack.Stats, lookahead bool) (err error) {
	u, err := unpack.New(dir, unpack.Options{Log: opts.Log})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := u.Close(); err == nil {
			err = cerr
		}
	}()
	// open starts layer i, from small if scanNext read its tar stream.
	open := func(i int, small []byte) <-chan openedLayer {
		ch := make(chan openedLayer, 1)
		if small != nil {
			ls, err := openLayerStream(bytes.NewReader(small), "none", opts.MaxLayerSize, "")
			ch <- openedLayer{ls: ls, err: err}
			return ch
		}
		go func() {
			r, err := blobs[i].open()
			if err != nil {
				ch <- openedLayer{err: err}
				return
			}
			ls, err := openLayerStream(r, im.Layers[i].Compression, opts.MaxLayerSize, dir)
			if err == nil && opts.Log.Enabled(ctx, slog.LevelDebug) {
				start, spill := time.Now(), ls.spill >= 0
				go func() {
					<-ls.produced()
					opts.Log.Debug("layer decompressed", "layer", i+1, "took", time.Since(start), "spill", spill)
				}()
			}
			ch <- openedLayer{ls: ls, r: r, err: err}
		}()
		return ch
	}
	next := open(0, nil)
	defer func() {
		// A layer opened ahead of a failure: wait for it and let it go.
		if next != nil {
			o := <-next
			o.close()
		}
	}()
	for i, l := range im.Layers {
		waitStart := time.Now()
		cur := <-next
		next = nil
		if cur.err != nil {
			cur.close()
			return fmt.Errorf("reading layer %d/%d %s: %w", i+1, len(im.Layers), l.Digest, cur.err)
		}
		var doomed *unpack.Doomed
		var small []byte // the next layer's tar stream, if scanNext read it
		if lookahead && i+1 < len(im.Layers) {
			doomed, small = scanNext(ctx, im.Layers[i+1], blobs[i+1], opts.MaxLayerSize)
		}
		if i+1 < len(im.Layers) {
			next = open(i+1, small)
		}
		applyStart := time.Now()
		opts.Progress.Applying(i, tarSize(blobs[i], l))
		tr := &unpackReader{r: cur.ls, i: i, p: opts.Progress}
		st, err := u.ApplyBefore(ctx, tr, doomed)
		tr.flush()
		if err == nil {
			err = cur.ls.finish(l.Digest, l.DiffID)
		}
		cur.close()
		blobs[i].close()
		if err != nil {
			return fmt.Errorf("applying layer %d/%d %s: %w", i+1, len(im.Layers), l.Digest, err)
		}
		opts.Log.Debug("layer applied", "layer", i+1, "digest", l.Digest, "waited", applyStart.Sub(waitStart), "took", time.Since(applyStart), "entries", st.Entries, "skipped", st.Skipped)
		total.Add(st)
		opts.Progress.Applied(i, st)
	}
	return nil
}

// openedLayer is a layer's stream, started ahead of its turn.
type openedLayer struct {
	ls  *layerStream
	r   io.ReadCloser
	err error
}

func (o openedLayer) close() {
	if o.ls != nil {
		o.ls.Close()
	}
	if o.r != nil {
		o.r.Close()
	}
}

// unpackReader reports the tar bytes the unpacker has read, in batches:
// tar reads 512-byte headers one by one, and a display needs no more.
type unpackReader struct {
	r       io.Reader
	i       int
	p       Progress
	pending int64
}

const unpackReportEvery = 256 << 10

func (ur *unpackReader) Read(b []byte) (int, error) {
	n, err := ur.r.Read(b)
	ur.pending += int64(n)
	if ur.pending >= unpackReportEvery {
		ur.flush()
	}
	return n, err
}

func (ur *unpackReader) flush() {
	if ur.pending > 0 {
		ur.p.Unpacking(ur.i, ur.pending)
		ur.pending = 0
	}
}

// tarSize returns the length of layer l's tar stream when its blob, once
// complete, tells it: an uncompressed layer's size, or gzip's trailer
// (ISIZE: the length modulo 2^32, lifted to at least the compressed size,
// which gzip never shrinks by more than a few per mille). 0: unknown (a
// blob still downloading, zstd).
func tarSize(b *blob, l registry.Layer) int64 {
	b.mu.Lock()
	path := b.path
	b.mu.Unlock()
	if path == "" {
		return 0
	}
	switch l.Compression {
	case registry.CompressionNone:
		return l.Size
	case registry.CompressionGzip:
	default:
		return 0
	}
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var tail [4]byte
	if _, err := f.ReadAt(tail[:], l.Size-4); err != nil {
		return 0
	}
	size := int64(binary.LittleEndian.Uint32(tail[:]))
	for size < l.Size-l.Size/100 {
		size += 1 << 32
	}
	return size
}

// progressReader reports bytes read and stops on cancellation.
type progressReader struct {
	ctx context.Context
	r   io.Reader
	i   int
	p   Progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	if err := pr.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := pr.r.Read(b)
	if n > 0 {
		pr.p.Fetching(pr.i, int64(n))
	}
	return n, err
}

// NopProgress is a Progress that ignores every event; embed it to implement
// only some of them.
type NopProgress struct{}

func (NopProgress) Begin(string, []registry.Layer) {}
func (NopProgress) Cached(int)                     {}
func (NopProgress) Fetching(int, int64)            {}
func (NopProgress) Fetched(int)                    {}
func (NopProgress) Applying(int, int64)            {}
func (NopProgress) Unpacking(int, int64)           {}
func (NopProgress) Applied(int, unpack.Stats)      {}
