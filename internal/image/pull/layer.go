package pull

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/image/gunzip"
)

// Read-ahead between decompression and unpacking: 16 chunks of 1 MiB in
// memory, and up to 1 GiB more in a spill file (see readAhead).
const (
	chunkSize   = 1 << 20
	chunksAhead = 16
	spillChunks = 1024
)

// layerStream turns one compressed layer blob into its tar stream. A
// goroutine of its own reads and decompresses the blob; the consumer unpacks
// the result on another core. Whichever side has less to do hashes it for
// the DiffID.
// The blob's own digest was verified when it entered the cache (or when it
// was taken from it), so it is not hashed again here.
type layerStream struct {
	*readAhead
	diff     hash.Hash
	closeDec func()
}

// openLayerStream starts decompressing r (compression "gzip", "zstd" or
// "none"). maxSize bounds the uncompressed size, so a decompression bomb
// cannot fill the disk. If spillDir is not "", decompression may run ahead
// of the reader into an unnamed temporary file on spillDir's file system
// (if it supports O_TMPFILE; else it waits for the reader).
func openLayerStream(r io.Reader, compression string, maxSize int64, spillDir string) (*layerStream, error) {
	ls := &layerStream{diff: sha256.New(), closeDec: func() {}}
	dec, closeDec, err := decompress(r, compression, chunkSize)
	if err != nil {
		return nil, err
	}
	ls.closeDec = closeDec
	spill := -1 // the spill file; Close closes it
	if spillDir != "" {
		// Never linked into the tree: the file vanishes with its descriptor.
		if fd, err := unix.Open(spillDir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600); err == nil {
			spill = fd
		}
	}
	var src io.Reader = &countingReader{r: dec, limit: maxSize}
	sink := io.Writer(ls.diff)
	if compression != "gzip" || gunzip.Fast {
		// Decompressing is the lighter half: hash beside it.
		src, sink = io.TeeReader(src, ls.diff), nil
	}
	ls.readAhead = newSpillingReadAhead(src, sink, chunkSize, chunksAhead, spill, spillChunks)
	return ls, nil
}

// decompress returns the decompressed stream of r (compression "gzip",
// "zstd" or "none") and the function that releases the decompressor.
// bufSize is the size of the read buffer put before r where reading in
// small pieces would cost a system call each: for zstd, and for an
// uncompressed stream, which the tar reader reads 512 bytes at a time.
// The gzip engines buffer their input themselves (ISA-L reads 256 KiB at
// a time; for klauspost/compress, gunzip adds a buffer unless r is an
// io.ByteReader already), so gzip gets none here.
func decompress(r io.Reader, compression string, bufSize int) (io.Reader, func(), error) {
	switch compression {
	case "gzip":
		zr, err := gunzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading gzip header: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case "zstd":
		zr, err := zstd.NewReader(bufio.NewReaderSize(r, bufSize), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("starting zstd: %w", err)
		}
		return zr, zr.Close, nil
	case "none":
		return bufio.NewReaderSize(r, bufSize), func() {}, nil
	}
	return nil, nil, fmt.Errorf("unsupported layer compression %q", compression)
}

// readSmall returns the decompressed content of the blob file path, or nil
// if it is larger than max bytes or cannot be read (applying the layer
// reports why).
func readSmall(path, compression string, max int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	// One buffer the size of the blob (within bounds) serves every
	// compression: decompress reuses a *bufio.Reader that is large
	// enough, and klauspost/compress reads through it as an io.ByteReader.
	bufSize := chunkSize
	if fi, err := f.Stat(); err == nil && fi.Size() < chunkSize {
		bufSize = int(fi.Size())
		if bufSize < 4<<10 {
			bufSize = 4 << 10
		}
	}
	dec, closeDec, err := decompress(bufio.NewReaderSize(f, bufSize), compression, bufSize)
	if err != nil {
		return nil
	}
	defer closeDec()
	b, err := io.ReadAll(io.LimitReader(dec, max+1))
	if err != nil || int64(len(b)) > max {
		return nil
	}
	return b
}

// finish drains what the unpacker left (tar padding), stops the producer and
// checks the DiffID.
func (ls *layerStream) finish(blob, diffID v1.Hash) error {
	_, drainErr := io.Copy(io.Discard, ls.readAhead)
	ls.Close()
	if drainErr != nil {
		return fmt.Errorf("reading layer %s: %w", blob, drainErr)
	}
	if got := digestOf(ls.diff); got != diffID {
		return fmt.Errorf("layer %s: uncompressed content hashes to %s, but the image config says %s (rootfs.diff_ids)", blob, got, diffID)
	}
	return nil
}

// Close stops the producer goroutine; safe to call more than once.
func (ls *layerStream) Close() error {
	err := ls.readAhead.Close()
	ls.closeDec()
	ls.closeDec = func() {}
	if ls.spill >= 0 {
		_ = unix.Close(ls.spill)
		ls.spill = -1
	}
	return err
}

func digestOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// errTooLarge reports an uncompressed layer over the size limit.
var errTooLarge = errors.New("uncompressed layer exceeds the size limit (a decompression bomb?)")

// countingReader counts bytes and fails past limit (0: no limit).
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.limit > 0 && c.n > c.limit {
		return n, errTooLarge
	}
	return n, err
}
