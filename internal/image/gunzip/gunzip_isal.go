//go:build isal && cgo

package gunzip

/*
#cgo LDFLAGS: -lisal
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

// step runs isal_inflate on in and out, which are Go memory: the pointers
// are cleared before returning, so ISA-L keeps none of them (its window of
// history lives in the state).
static int step(struct inflate_state *s, uint8_t *in, uint32_t in_len,
		uint8_t *out, uint32_t out_len, uint32_t *in_used, uint32_t *out_used) {
	s->next_in = in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	int ret = isal_inflate(s);
	*in_used = in_len - s->avail_in;
	*out_used = out_len - s->avail_out;
	s->next_in = NULL;
	s->avail_in = 0;
	s->next_out = NULL;
	s->avail_out = 0;
	return ret;
}

static struct inflate_state *new_state(void) {
	struct inflate_state *s = malloc(sizeof(struct inflate_state));
	if (s != NULL) {
		isal_inflate_init(s);
		s->crc_flag = ISAL_GZIP;
	}
	return s;
}

static void reset_state(struct inflate_state *s) {
	isal_inflate_reset(s);
	s->crc_flag = ISAL_GZIP;
}

static int finished(struct inflate_state *s) { return s->block_state == ISAL_BLOCK_FINISH; }
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"unsafe"
)

const (
	engine = "isa-l"
	fast   = true
)

// inBufSize is how much compressed input is read from the source at once.
const inBufSize = 256 << 10

// reader feeds isal_inflate from src. The state is C memory, freed by
// Close; in is Go memory, passed to C only for the length of a call.
type reader struct {
	src     io.Reader
	state   *C.struct_inflate_state
	in      []byte
	pos     int  // in[pos:] is input not consumed yet
	eof     bool // src is at its end
	err     error
	cleanup runtime.Cleanup
}

func newReader(src io.Reader) (io.ReadCloser, error) {
	s := C.new_state()
	if s == nil {
		return nil, errors.New("gzip: allocating the ISA-L state")
	}
	z := &reader{src: src, state: s, in: make([]byte, 0, inBufSize)}
	// A reader dropped without Close still frees its C memory.
	z.cleanup = runtime.AddCleanup(z, func(s *C.struct_inflate_state) { C.free(unsafe.Pointer(s)) }, s)
	return z, nil
}

// fill reads more input into in, keeping what is not consumed yet.
func (z *reader) fill() error {
	if z.pos > 0 {
		n := copy(z.in[:cap(z.in)], z.in[z.pos:])
		z.in, z.pos = z.in[:n], 0
	}
	n, err := z.src.Read(z.in[len(z.in):cap(z.in)])
	z.in = z.in[:len(z.in)+n]
	if err == io.EOF {
		z.eof = true
		return nil
	}
	return err
}

func (z *reader) Read(p []byte) (n int, err error) {
	if z.err != nil {
		return 0, z.err
	}
	if z.state == nil {
		return 0, errors.New("gzip: read after Close")
	}
	defer func() { z.err = err }()
	for n < len(p) {
		if C.finished(z.state) != 0 {
			// A member ended: another may follow (gzip -c a b >c).
			if z.pos == len(z.in) && !z.eof {
				if err := z.fill(); err != nil {
					return n, err
				}
				continue
			}
			if z.pos == len(z.in) {
				return n, io.EOF
			}
			C.reset_state(z.state)
		}
		if z.pos == len(z.in) {
			if z.eof {
				return n, io.ErrUnexpectedEOF
			}
			if err := z.fill(); err != nil {
				return n, err
			}
			continue
		}
		var inUsed, outUsed C.uint32_t
		in, out := z.in[z.pos:], p[n:]
		ret := C.step(z.state, (*C.uint8_t)(unsafe.Pointer(&in[0])), C.uint32_t(len(in)),
			(*C.uint8_t)(unsafe.Pointer(&out[0])), C.uint32_t(min(len(out), 1<<30)), &inUsed, &outUsed)
		z.pos += int(inUsed)
		n += int(outUsed)
		if ret < 0 {
			return n, inflateError(ret)
		}
		if inUsed == 0 && outUsed == 0 && C.finished(z.state) == 0 {
			// ISA-L keeps partial input itself, so this should not happen;
			// never spin on it.
			return n, errors.New("gzip: ISA-L made no progress")
		}
	}
	return n, nil
}

func inflateError(ret C.int) error {
	switch ret {
	case C.ISAL_INVALID_WRAPPER:
		return errors.New("gzip: invalid header")
	case C.ISAL_UNSUPPORTED_METHOD:
		return errors.New("gzip: unsupported compression method")
	case C.ISAL_INCORRECT_CHECKSUM:
		return errors.New("gzip: invalid checksum")
	case C.ISAL_INVALID_BLOCK, C.ISAL_INVALID_SYMBOL, C.ISAL_INVALID_LOOKBACK:
		return fmt.Errorf("gzip: corrupt deflate data (ISA-L error %d)", int(ret))
	}
	return fmt.Errorf("gzip: ISA-L error %d", int(ret))
}

func (z *reader) Close() error {
	if z.state != nil {
		z.cleanup.Stop()
		C.free(unsafe.Pointer(z.state))
		z.state = nil
	}
	return nil
}
