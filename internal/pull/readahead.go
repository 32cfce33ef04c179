package pull

import (
	"errors"
	"io"
	"sync"
)

// readAhead reads r in a goroutine of its own, up to n chunks of size bytes
// ahead of the consumer, so that producing the stream (decompression) and
// consuming it (writing files) run on different cores. Memory is bounded by
// n*size. Each chunk is written to sink, if set, on the consumer's side as
// it is taken: hashing the stream there balances the two cores, since
// decompressing is the heavier half. Close stops the goroutine; it does not
// close r.
type readAhead struct {
	sink io.Writer

	free   chan []byte
	filled chan chunk
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	cur []byte // unread part of the chunk being consumed
	buf []byte // the chunk cur belongs to, returned to free when used up
	err error  // sticky error (io.EOF at the end)
}

type chunk struct {
	buf []byte
	n   int
	err error
}

func newReadAhead(r io.Reader, sink io.Writer, size, n int) *readAhead {
	ra := &readAhead{
		sink:   sink,
		free:   make(chan []byte, n),
		filled: make(chan chunk, n),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range n {
		ra.free <- make([]byte, size)
	}
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.done)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := io.ReadFull(r, buf)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		select {
		case ra.filled <- chunk{buf: buf, n: n, err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
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
		c := <-ra.filled
		ra.buf, ra.cur, ra.err = c.buf, c.buf[:c.n], c.err
		if ra.sink != nil && c.n > 0 {
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
