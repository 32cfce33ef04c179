package pull

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ci"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestLayerStream(t *testing.T) {
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, 3*chunkSize + 7, chunksAhead*chunkSize + 1} {
		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range data {
			data[i] = byte(rng.IntN(4)) // compressible
		}
		diffID := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(data))}
		for _, compression := range []string{"gzip", "zstd", "none"} {
			t.Run(fmt.Sprintf("%s/%d", compression, size), func(t *testing.T) {
				ls, err := openLayerStream(bytes.NewReader(compress(t, compression, data)), compression, 0, "")
				if err != nil {
					t.Fatal(err)
				}
				// Read part of it as the unpacker would; finish drains the rest.
				head := make([]byte, size/2)
				if _, err := io.ReadFull(ls, head); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(head, data[:size/2]) {
					t.Fatal("stream content differs")
				}
				if err := ls.finish(v1.Hash{}, diffID); err != nil {
					t.Fatal(err)
				}
				wrong := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", 1)}
				ls, _ = openLayerStream(bytes.NewReader(compress(t, compression, data)), compression, 0, "")
				if err := ls.finish(v1.Hash{}, wrong); err == nil {
					t.Error("a wrong DiffID was accepted")
				}
			})
		}
	}
}

func TestLayerStreamSizeLimit(t *testing.T) {
	data := make([]byte, 10*chunkSize)
	ls, err := openLayerStream(bytes.NewReader(compress(t, "gzip", data)), "gzip", chunkSize, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, ls)
	ls.Close()
	if !errors.Is(err, errTooLarge) {
		t.Errorf("reading past the limit: %v, want errTooLarge", err)
	}
}

func TestLayerStreamCloseEarly(t *testing.T) {
	data := make([]byte, 40*chunkSize)
	ls, err := openLayerStream(bytes.NewReader(compress(t, "gzip", data)), "gzip", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	ls.Close() // must not hang with the producer blocked on a full queue
	ls.Close()
}

func compress(t *testing.T, compression string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch compression {
	case "gzip":
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "zstd":
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	default:
		b.Write(data)
	}
	return b.Bytes()
}

// A reader that falls behind gets the spilled chunks back in order, and the
// producer finishes without waiting for it.
func TestLayerStreamSpill(t *testing.T) {
	data := make([]byte, 2*chunksAhead*chunkSize+123)
	for i := range data {
		data[i] = byte(i * i >> 12)
	}
	diffID := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(data))}
	ls, err := openLayerStream(bytes.NewReader(compress(t, "gzip", data)), "gzip", 0, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	if ls.spill < 0 {
		ci.Skip(t, "no O_TMPFILE on the temp dir's file system")
	}
	<-ls.produced() // all of it decompressed before anything is read
	if got := ls.spilled.Load(); got == 0 {
		t.Error("nothing was spilled")
	}
	got, err := io.ReadAll(struct{ io.Reader }{ls})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("stream content differs")
	}
	if err := ls.finish(v1.Hash{}, diffID); err != nil {
		t.Fatal(err)
	}
}

// With the spill file full the producer waits for the reader, as without
// one; closing early does not hang.
func TestReadAheadSpillFull(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "spill")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 20*1000+5)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ra := newSpillingReadAhead(bytes.NewReader(data), nil, 1000, 2, int(f.Fd()), 3)
	got, err := io.ReadAll(struct{ io.Reader }{ra})
	ra.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("stream content differs")
	}
	ra = newSpillingReadAhead(bytes.NewReader(data), nil, 1000, 2, int(f.Fd()), 3)
	if _, err := ra.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	ra.Close()
	ra.Close()
}
