package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// maxVerifyJobs bounds how many blobs Verify hashes at once.
const maxVerifyJobs = 4

// VerifyReport is what [Cache.Verify] found and, with repair, did. It is
// meant to be encoded as JSON (the output of "mbctl cache verify --json");
// its lists are empty, never null.
type VerifyReport struct {
	// Dir is the cache directory; Repair whether Verify repaired.
	Dir    string `json:"dir"`
	Repair bool   `json:"repair"`
	// Blobs is the number of blobs hashed, Bytes their total size.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Bad are the blobs whose content does not hash to their name, or that
	// cannot be read, sorted by digest.
	Bad []BadBlob `json:"bad"`
	// Missing are the blobs that images in index.json need and that are
	// absent: never pulled completely, lost, or (after a repair) removed
	// because they were bad. Pulling the images again fetches them. A bad
	// blob that was not removed is listed in Bad only.
	Missing []MissingBlob `json:"missing"`
	// TempFiles are temporary files of blob and index.json writers. Without
	// repair some may belong to pulls running now; with repair, which waits
	// for the pulls to end, they are leftovers of killed ones.
	TempFiles []TempFile `json:"temp_files"`
	// Unknown are paths under blobs/ that are neither sha256 blobs nor
	// temporary files; Verify does not check or remove them (Prune removes
	// files in blobs/sha256 that no image references).
	Unknown []string `json:"unknown"`
	// Index is set if index.json could not be used.
	Index *IndexProblem `json:"index,omitempty"`
	// FreedBytes is the space the repair freed by removing bad blobs and
	// temporary files.
	FreedBytes int64 `json:"freed_bytes"`
}

// Clean reports whether Verify found nothing wrong: no bad, missing or
// temporary files and a usable index.json (unknown files do not count).
// After a repair, verify again to see what is left.
func (r *VerifyReport) Clean() bool {
	return len(r.Bad) == 0 && len(r.Missing) == 0 && len(r.TempFiles) == 0 && r.Index == nil
}

// BadBlob is a blob that failed verification.
type BadBlob struct {
	// Digest is the blob's name, the digest its content should have.
	Digest v1.Hash `json:"digest"`
	Path   string  `json:"path"`
	// Size is the size of the file; ExpectedSize the size that the
	// descriptors of the images in index.json give, if any references it.
	Size         int64  `json:"size"`
	ExpectedSize *int64 `json:"expected_size,omitempty"`
	// Actual is what the content hashes to; nil if it could not be read.
	Actual *v1.Hash `json:"actual,omitempty"`
	// Error says what is wrong.
	Error string `json:"error"`
	// Needed says whether an image in index.json references the blob.
	Needed bool `json:"needed"`
	// Removed says whether the repair deleted it.
	Removed bool `json:"removed"`
}

// MissingBlob is a blob that images in index.json need but that is absent.
type MissingBlob struct {
	Digest v1.Hash `json:"digest"`
	// NeededBy are the references of the images that need it (the digest
	// of the image, for an entry without a reference), sorted.
	NeededBy []string `json:"needed_by"`
}

// TempFile is a temporary file in the cache.
type TempFile struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	// Removed says whether the repair deleted it.
	Removed bool `json:"removed"`
}

// IndexProblem is an index.json that could not be used, and what the
// repair did about it.
type IndexProblem struct {
	Path  string `json:"path"`
	Error string `json:"error"`
	// Rebuilt says whether the repair replaced it by an index recovered
	// from the blobs; MovedTo is where the old file went ("" if there was
	// none); Recovered are the digests of the images the new index lists.
	// Their tags are lost: tags live only in index.json.
	Rebuilt   bool      `json:"rebuilt"`
	MovedTo   string    `json:"moved_to,omitempty"`
	Recovered []v1.Hash `json:"recovered"`
}

// Verify checks the whole cache: it hashes every blob (a few at a time),
// and reports the bad ones, the blobs that the images in index.json need
// but that are absent, temporary files, and an index.json that cannot be
// used; see [VerifyReport]. Without repair it changes nothing and holds the
// shared cache lock, so pulls go on meanwhile. With repair it holds the
// exclusive lock, waiting for running pulls like [Cache.Prune] (so a
// goroutine that holds the shared lock must not call it), and deletes the
// bad blobs and the temporary files, and rebuilds an unusable index.json
// as the cache does whenever it finds one: the old file is moved aside to
// index.json.corrupt-TIME and the images whose manifests and blobs are all
// present are listed again, with [AnnotationRecovered] but without their
// tags, which exist nowhere else. Blobs it deletes are fetched again by the
// next pull that needs them.
//
// Verify stops with ctx's error when ctx is done, returning what it found
// so far. Other errors (a file it could not delete) are returned together
// with the complete report.
func (c *Cache) Verify(ctx context.Context, repair bool) (VerifyReport, error) {
	rep := VerifyReport{Dir: c.dir, Repair: repair, Bad: []BadBlob{}, Missing: []MissingBlob{}, TempFiles: []TempFile{}, Unknown: []string{}}
	release, err := c.Acquire(ctx, !repair)
	if err != nil {
		return rep, fmt.Errorf("verifying the cache %s: %w", c.dir, err)
	}
	defer release()

	idx, ierr := c.loadIndex()
	if ierr != nil {
		rep.Index = &IndexProblem{Path: c.indexPath(), Error: ierr.Error(), Recovered: []v1.Hash{}}
	}
	blobs, err := c.scanBlobs(&rep)
	if err != nil {
		return rep, fmt.Errorf("verifying the cache %s: %w", c.dir, err)
	}
	if err := c.hashBlobs(ctx, blobs, &rep); err != nil {
		return rep, fmt.Errorf("verifying the cache %s: %w", c.dir, err)
	}

	var errs []error
	if repair {
		errs = c.repair(ctx, &rep)
		if rep.Index != nil {
			idx, ierr = c.loadIndex()
			if ierr != nil {
				errs = append(errs, ierr)
			}
		}
	}
	if idx != nil {
		c.checkReferences(idx, &rep)
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("repairing the cache %s: %w", c.dir, err)
	}
	return rep, nil
}

// blobFile is a blob Verify hashes.
type blobFile struct {
	digest v1.Hash
	path   string
}

// scanBlobs lists the blobs to hash, and records temporary and unknown
// files in rep (and blobs that are not regular files as bad).
func (c *Cache) scanBlobs(rep *VerifyReport) ([]blobFile, error) {
	root := filepath.Join(c.dir, blobsDir)
	algs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	addTemp := func(p string) {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			rep.TempFiles = append(rep.TempFiles, TempFile{Path: p, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
		}
	}
	var blobs []blobFile
	for _, alg := range algs {
		dir := filepath.Join(root, alg.Name())
		if alg.Name() != "sha256" || !alg.IsDir() {
			rep.Unknown = append(rep.Unknown, dir)
			continue
		}
		files, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			p := filepath.Join(dir, f.Name())
			d := v1.Hash{Algorithm: "sha256", Hex: f.Name()}
			switch {
			case strings.HasPrefix(f.Name(), tmpPrefix) && f.Type().IsRegular():
				addTemp(p)
			case !validDigest(d):
				rep.Unknown = append(rep.Unknown, p)
			case !f.Type().IsRegular():
				rep.Bad = append(rep.Bad, BadBlob{Digest: d, Path: p, Error: "not a regular file"})
			default:
				blobs = append(blobs, blobFile{digest: d, path: p})
			}
		}
	}
	tmps, err := filepath.Glob(filepath.Join(c.dir, "."+indexFile+".tmp*"))
	if err != nil {
		return nil, err
	}
	for _, p := range tmps {
		addTemp(p)
	}
	return blobs, nil
}

// hashBlobs hashes blobs, at most maxVerifyJobs at a time, and records the
// bad ones in rep.
func (c *Cache) hashBlobs(ctx context.Context, blobs []blobFile, rep *VerifyReport) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, min(maxVerifyJobs, runtime.GOMAXPROCS(0))))
	var mu sync.Mutex
	for _, b := range blobs {
		g.Go(func() error {
			fi, err := c.checkBlob(gctx, b.digest, -1, false)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone since the listing (a reader deleted it)
			}
			if cerr := gctx.Err(); cerr != nil {
				return cerr
			}
			mu.Lock()
			defer mu.Unlock()
			if fi != nil {
				rep.Blobs++
				rep.Bytes += fi.Size()
			}
			if err == nil {
				return nil
			}
			bad := BadBlob{Digest: b.digest, Path: b.path, Error: err.Error()}
			if fi != nil {
				bad.Size = fi.Size()
			}
			if cerr, ok := errors.AsType[*CorruptBlobError](err); ok {
				actual := cerr.Actual
				bad.Actual = &actual
				bad.Error = "digest mismatch: the content hashes to " + actual.String()
			}
			rep.Bad = append(rep.Bad, bad)
			return nil
		})
	}
	err := g.Wait()
	sort.Slice(rep.Bad, func(i, j int) bool { return rep.Bad[i].Digest.Hex < rep.Bad[j].Digest.Hex })
	return err
}

// repair deletes what rep found bad and rebuilds index.json if it could not
// be used. The caller holds the exclusive cache lock: no writer is running.
func (c *Cache) repair(ctx context.Context, rep *VerifyReport) []error {
	var errs []error
	for i := range rep.Bad {
		b := &rep.Bad[i]
		if err := os.Remove(b.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing the bad blob %s: %w", b.Path, err))
			continue
		}
		b.Removed = true
		rep.FreedBytes += b.Size
	}
	removeTemp := func(t *TempFile) {
		if err := os.Remove(t.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing the temporary file %s: %w", t.Path, err))
			return
		}
		t.Removed = true
		rep.FreedBytes += t.Size
	}
	indexTemp := "." + indexFile + ".tmp"
	for i := range rep.TempFiles {
		if !strings.HasPrefix(filepath.Base(rep.TempFiles[i].Path), indexTemp) {
			removeTemp(&rep.TempFiles[i])
		}
	}
	// index.json's temporary files and index.json itself change only under
	// the index lock.
	unlock, err := c.lockIndex()
	if err != nil {
		return append(errs, err)
	}
	defer unlock()
	for i := range rep.TempFiles {
		if strings.HasPrefix(filepath.Base(rep.TempFiles[i].Path), indexTemp) {
			removeTemp(&rep.TempFiles[i])
		}
	}
	if rep.Index == nil {
		return errs
	}
	_, cause := c.loadIndex()
	if cause == nil {
		return errs // rebuilt by another process meanwhile
	}
	_, res, err := c.rebuildIndexLocked(ctx, cause)
	if err != nil {
		return append(errs, err)
	}
	rep.Index.Rebuilt, rep.Index.MovedTo = true, res.movedTo
	for _, d := range res.recovered {
		rep.Index.Recovered = append(rep.Index.Recovered, d.Digest)
	}
	return errs
}

// checkReferences walks the images of idx, filling rep.Missing and the
// Needed and ExpectedSize of rep.Bad. It deletes nothing.
func (c *Cache) checkReferences(idx *v1.IndexManifest, rep *VerifyReport) {
	bad := map[v1.Hash]*BadBlob{}
	for i := range rep.Bad {
		bad[rep.Bad[i].Digest] = &rep.Bad[i]
	}
	missing := map[v1.Hash][]string{}
	for _, m := range idx.Manifests {
		name := refOf(m)
		if name == "" {
			name = m.Digest.String()
		}
		w := walker{
			c:    c,
			seen: map[v1.Hash]bool{},
			read: func(d v1.Hash) ([]byte, error) {
				if b := bad[d]; b != nil && !b.Removed {
					return nil, errors.New(b.Error)
				}
				return c.readBlob(d, false)
			},
			visit: func(d v1.Descriptor) {
				if b := bad[d.Digest]; b != nil {
					b.Needed = true
					if b.ExpectedSize == nil {
						size := d.Size
						b.ExpectedSize = &size
					}
				}
			},
			missing: func(d v1.Hash) {
				if b := bad[d]; b == nil || b.Removed {
					missing[d] = append(missing[d], name)
				}
			},
		}
		w.walk(m, true)
	}
	for d, names := range missing {
		slices.Sort(names)
		rep.Missing = append(rep.Missing, MissingBlob{Digest: d, NeededBy: slices.Compact(names)})
	}
	sort.Slice(rep.Missing, func(i, j int) bool { return rep.Missing[i].Digest.String() < rep.Missing[j].Digest.String() })
}
