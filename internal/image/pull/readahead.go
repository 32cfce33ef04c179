package pull

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// readAhead reads r in a goroutine of its own, up to n chunks of size bytes
// ahead of the consumer, so that producing the stream (decompression) and
// consuming it (writing files) run on different cores. Memory is bounded by
// n*size. Each chunk is written to sink, if set, on the consumer's side as
// it is taken: hashing the stream there balances the two cores, since
// decompressing is the heavier half. Close stops the goroutine; it does not
// close r.
//
// With a spill file, the producer does not wait when the n chunks are
// full: it writes further chunks to the file (up to maxSpill of them not
// yet consumed) and the consumer reads them back in order, punching them
// out of the file as it goes. The file is an unnamed one on the file system
// being written (page cache: it costs no process memory, and freed before
// writeback it costs no disk I/O either), so decompression never waits for
// a slow stretch of file creation, and finishes early enough for the next
// layer's to start while this one is still being applied.
type readAhead struct {
	sink io.Writer

	free   chan []byte
	filled chan chunk
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	spill    int          // the spill file's descriptor, -1: none
	maxSpill int64        // chunks in spill not yet consumed, at most
	spilled  atomic.Int64 // chunks in spill not yet consumed
	spillOff int64        // producer: where the next spilled chunk goes
	spillOK  bool         // producer: spilling has not failed
	pbuf     []byte       // producer: buffer of a chunk on its way to spill
	sbuf     []byte       // consumer: buffer of a chunk read back from spill

	cur []byte // unread part of the chunk being consumed
	buf []byte // the chunk cur belongs to, returned to free when used up
	err error  // sticky error (io.EOF at the end)
}

type chunk struct {
	buf     []byte
	n       int
	err     error
	spilled bool  // in the spill file at off, not in buf
	off     int64 // offset in the spill file
}

// newSpillingReadAhead reads r ahead in n chunks of size bytes, writing
// what it reads to sink, with the spill file spill (a descriptor open for
// reading and writing, -1: none) holding up to maxSpill chunks beyond
// them. The caller closes spill after Close.
func newSpillingReadAhead(r io.Reader, sink io.Writer, size, n int, spill, maxSpill int) *readAhead {
	if spill < 0 {
		maxSpill = 0
	}
	ra := &readAhead{
		sink:     sink,
		free:     make(chan []byte, n),
		filled:   make(chan chunk, n+maxSpill),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		spill:    spill,
		maxSpill: int64(maxSpill),
		spillOK:  maxSpill > 0,
	}
	for range n {
		ra.free <- make([]byte, size)
	}
	if maxSpill > 0 {
		ra.pbuf = make([]byte, size)
		ra.sbuf = make([]byte, size)
	}
	go ra.fill(r)
	return ra
}

// produced is closed once the producer has stopped: the stream is read to
// its end (or failed, or Close was called).
func (ra *readAhead) produced() <-chan struct{} { return ra.done }

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.done)
	for {
		buf, toSpill := ra.nextBuf()
		if buf == nil {
			return // stopped
		}
		n, err := io.ReadFull(r, buf)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		c := chunk{buf: buf, n: n, err: err}
		if toSpill {
			var ok bool
			if c, ok = ra.spillChunk(c); !ok {
				return // stopped
			}
		}
		select {
		case ra.filled <- c:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// nextBuf returns the buffer for the next chunk: a free one, else (with
// room in the spill file) the producer's spill buffer, else a free one as
// soon as there is one. It returns nil once Close is called.
func (ra *readAhead) nextBuf() (buf []byte, toSpill bool) {
	select {
	case <-ra.stop:
		return nil, false
	case buf = <-ra.free:
		return buf, false
	default:
	}
	if ra.spillOK && ra.spilled.Load() < ra.maxSpill {
		return ra.pbuf, true
	}
	select {
	case buf = <-ra.free:
		return buf, false
	case <-ra.stop:
		return nil, false
	}
}

// spillChunk writes c, read into the producer's spill buffer, to the spill
// file. If that fails (no room on the file system, say), spilling stops
// for good and c is copied to a free buffer as soon as there is one. It
// returns false if Close was called meanwhile.
func (ra *readAhead) spillChunk(c chunk) (chunk, bool) {
	if c.n == 0 {
		c.buf = nil
		return c, true
	}
	if err := pwriteAll(ra.spill, c.buf[:c.n], ra.spillOff); err == nil {
		c.buf, c.spilled, c.off = nil, true, ra.spillOff
		ra.spillOff += int64(c.n)
		ra.spilled.Add(1)
		return c, true
	}
	ra.spillOK = false
	select {
	case buf := <-ra.free:
		copy(buf, c.buf[:c.n])
		c.buf = buf
		return c, true
	case <-ra.stop:
		return c, false
	}
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// take makes c the chunk being consumed.
func (ra *readAhead) take(c chunk) {
	ra.err = c.err
	if !c.spilled {
		ra.buf, ra.cur = c.buf, c.buf[:c.n]
		return
	}
	ra.spilled.Add(-1)
	b := ra.sbuf[:c.n]
	for off := 0; off < len(b); {
		n, err := unix.Pread(ra.spill, b[off:], c.off+int64(off))
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			ra.cur, ra.err = nil, fmt.Errorf("reading back decompressed layer data: %w", err)
			return
		}
		off += n
	}
	ra.cur = b
	// Done with these pages: drop them before they are written back.
	_ = unix.Fallocate(ra.spill, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, c.off, int64(c.n))
}

// Read implements io.Reader.
func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf
			ra.buf = nil
		}
		if ra.err != nil {
			return 0, ra.err
		}
		ra.take(<-ra.filled)
		if ra.sink != nil && len(ra.cur) > 0 {
			ra.sink.Write(ra.cur) // a hash.Hash: never fails
		}
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// WriteTo implements io.WriterTo, handing whole chunks to w.
func (ra *readAhead) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(ra.cur) > 0 {
			n, err := w.Write(ra.cur)
			total += int64(n)
			ra.cur = ra.cur[n:]
			if err != nil {
				return total, err
			}
		}
		if _, err := ra.Read(nil); err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
	}
}

// Close stops the reading goroutine and waits for it.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	<-ra.done
	return nil
}
