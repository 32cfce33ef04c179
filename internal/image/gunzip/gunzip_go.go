//go:build !isal || !cgo

package gunzip

import (
	"bufio"
	"io"

	"github.com/klauspost/compress/gzip"
)

const (
	engine = "klauspost/compress"
	fast   = false
)

// bufSize is the read buffer put before a source that is not an
// io.ByteReader: the inflater reads its input a byte at a time through one.
const bufSize = 1 << 20

func newReader(r io.Reader) (io.ReadCloser, error) {
	if _, ok := r.(io.ByteReader); !ok {
		r = bufio.NewReaderSize(r, bufSize)
	}
	return gzip.NewReader(r)
}
