// Package gunzip decompresses gzip streams with the fastest engine this
// build has: Intel's ISA-L (igzip, build tag "isal" with cgo; `make build`
// uses it when libisal's headers are installed) or klauspost/compress.
//
// Decompression is the longest single task of a pull: a layer of 400 MB
// takes 1.2 s to inflate with klauspost/compress and 0.45 s with ISA-L on
// one core of the machines we measure on. Both engines check the gzip
// trailer (CRC-32 and size) and read concatenated members as one stream,
// as gzip(1) does.
package gunzip

import "io"

// NewReader returns the decompressed content of the gzip stream r. Errors
// in the stream (a bad header, corrupt data, a wrong checksum, a stream
// cut short) are returned by Read, or by NewReader for the header. Close
// releases the decompressor; it does not close r.
func NewReader(r io.Reader) (io.ReadCloser, error) { return newReader(r) }

// Engine names the decompressor this build uses.
const Engine = engine

// Fast is true when the engine decompresses several times faster than a
// pull writes files (ISA-L). Other work on the decompressed bytes, such as
// hashing them, then belongs beside the decompression, not beside the
// writing.
const Fast = fast
