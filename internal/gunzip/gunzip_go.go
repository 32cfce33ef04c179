//go:build !isal || !cgo

package gunzip

import (
	"io"

	"github.com/klauspost/compress/gzip"
)

const (
	engine = "klauspost/compress"
	fast   = false
)

func newReader(r io.Reader) (io.ReadCloser, error) {
	return gzip.NewReader(r)
}
