package gunzip

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"
)

// payload is n bytes, part compressible text and part random, so that
// the stream has stored, fixed and dynamic blocks and long matches.
func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, 0, n)
	for len(b) < n {
		switch r.IntN(3) {
		case 0:
			for range r.IntN(4096) {
				b = append(b, byte(r.Uint32()))
			}
		case 1:
			b = append(b, bytes.Repeat([]byte("man8s mbctl layer "), r.IntN(500))...)
		default:
			if len(b) > 0 {
				off := r.IntN(len(b))
				b = append(b, b[off:min(len(b), off+r.IntN(40000))]...)
			}
		}
	}
	return b[:n]
}

func gz(t testing.TB, level int, hdr gzip.Header, members ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, m := range members {
		w, err := gzip.NewWriterLevel(&buf, level)
		if err != nil {
			t.Fatal(err)
		}
		w.Header = hdr
		if _, err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func decompress(src io.Reader) ([]byte, error) {
	z, err := NewReader(src)
	if err != nil {
		return nil, err
	}
	defer z.Close()
	return io.ReadAll(z)
}

func TestRoundTrip(t *testing.T) {
	big := payload(3<<20, 1)
	tests := []struct {
		name    string
		stream  []byte
		want    []byte
		wrapSrc func(io.Reader) io.Reader
	}{
		{name: "empty", stream: gz(t, gzip.DefaultCompression, gzip.Header{}, nil), want: nil},
		{name: "small", stream: gz(t, gzip.DefaultCompression, gzip.Header{}, []byte("hello\n")), want: []byte("hello\n")},
		{name: "big", stream: gz(t, gzip.DefaultCompression, gzip.Header{}, big), want: big},
		{name: "stored blocks", stream: gz(t, gzip.NoCompression, gzip.Header{}, big), want: big},
		{name: "huffman only", stream: gz(t, gzip.HuffmanOnly, gzip.Header{}, big), want: big},
		{name: "best", stream: gz(t, gzip.BestCompression, gzip.Header{}, big[:1<<20]), want: big[:1<<20]},
		{
			name:   "header with name, comment and extra",
			stream: gz(t, gzip.DefaultCompression, gzip.Header{Name: "layer.tar", Comment: "a comment", Extra: []byte("xx\x02\x00ab")}, big[:100000]),
			want:   big[:100000],
		},
		{
			name:   "three members",
			stream: gz(t, gzip.DefaultCompression, gzip.Header{}, big[:5000], nil, big[5000:]),
			want:   big,
		},
		{name: "one byte reads of the source", stream: gz(t, gzip.DefaultCompression, gzip.Header{}, big[:300000]), want: big[:300000], wrapSrc: iotest.OneByteReader},
		{name: "source returns data with EOF", stream: gz(t, gzip.DefaultCompression, gzip.Header{}, big[:300000]), want: big[:300000], wrapSrc: iotest.DataErrReader},
		{name: "half reads of the source", stream: gz(t, gzip.DefaultCompression, gzip.Header{}, big), want: big, wrapSrc: iotest.HalfReader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src io.Reader = bytes.NewReader(tt.stream)
			if tt.wrapSrc != nil {
				src = tt.wrapSrc(src)
			}
			got, err := decompress(src)
			if err != nil {
				t.Fatalf("%s: %v", Engine, err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("%s: got %d bytes, want %d (first difference at %d)", Engine, len(got), len(tt.want), firstDiff(got, tt.want))
			}
			// The reader's contract with small and odd-sized reads.
			z, err := NewReader(bytes.NewReader(tt.stream))
			if err != nil {
				t.Fatal(err)
			}
			defer z.Close()
			if err := iotest.TestReader(z, tt.want); err != nil {
				t.Errorf("%s: %v", Engine, err)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Every damaged stream is an error, never data returned as if whole.
func TestDamaged(t *testing.T) {
	data := payload(1<<20, 2)
	good := gz(t, gzip.DefaultCompression, gzip.Header{}, data)
	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 0x55
		return b
	}
	tests := []struct {
		name   string
		stream []byte
	}{
		{name: "empty input", stream: nil},
		{name: "not gzip", stream: []byte("this is a tar file, honest\n")},
		{name: "bad magic", stream: flip(0)},
		{name: "bad method", stream: flip(2)},
		{name: "corrupt data", stream: flip(len(good) / 2)},
		{name: "wrong CRC", stream: flip(len(good) - 6)},
		{name: "wrong size", stream: flip(len(good) - 2)},
		{name: "trailing garbage", stream: append(bytes.Clone(good), "garbage"...)},
		{name: "trailing zeros", stream: append(bytes.Clone(good), make([]byte, 512)...)},
	}
	for _, cut := range []int{1, 9, 10, 11, 100, len(good) / 2, len(good) - 8, len(good) - 4, len(good) - 1} {
		tests = append(tests, struct {
			name   string
			stream []byte
		}{name: fmt.Sprintf("cut at %d", cut), stream: good[:cut]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decompress(bytes.NewReader(tt.stream))
			if err == nil {
				t.Fatalf("%s: no error, %d bytes", Engine, len(got))
			}
		})
	}
	t.Run("cut short is ErrUnexpectedEOF", func(t *testing.T) {
		_, err := decompress(bytes.NewReader(good[:len(good)/2]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: %v, want io.ErrUnexpectedEOF", Engine, err)
		}
	})
	t.Run("source error is passed on", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := decompress(io.MultiReader(bytes.NewReader(good[:1000]), iotest.ErrReader(boom)))
		if !errors.Is(err, boom) {
			t.Fatalf("%s: %v, want the source's error", Engine, err)
		}
	})
}

// FuzzNewReader checks the engine against the standard library: whatever
// it returns without error, compress/gzip returns too, byte for byte (up
// to its own error, for the rare stream that the standard library is
// stricter about, such as a last member with reserved header flags).
func FuzzNewReader(f *testing.F) {
	f.Add(gz(f, gzip.DefaultCompression, gzip.Header{}, []byte("hello, hello, hello")))
	f.Add(gz(f, gzip.NoCompression, gzip.Header{Name: "x"}, payload(2000, 3)))
	f.Add(gz(f, gzip.BestSpeed, gzip.Header{}, payload(3000, 4), []byte("second")))
	f.Fuzz(func(t *testing.T, stream []byte) {
		got, err := decompress(bytes.NewReader(stream))
		if err != nil {
			return
		}
		var want []byte
		if zr, err := gzip.NewReader(bytes.NewReader(stream)); err == nil {
			want, _ = io.ReadAll(zr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes, compress/gzip: %d (first difference at %d)", Engine, len(got), len(want), firstDiff(got, want))
		}
	})
}

// Readers dropped without Close, half read or not read at all, are
// collected without harm; Close twice is fine.
func TestDropAndDoubleClose(t *testing.T) {
	stream := gz(t, gzip.DefaultCompression, gzip.Header{}, payload(200000, 5))
	for i := range 50 {
		z, err := NewReader(bytes.NewReader(stream))
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := z.Read(make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
	}
	runtime.GC()
	runtime.GC()
	z, err := NewReader(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}
