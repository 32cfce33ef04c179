package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// testWriter sends log lines to t.Log and keeps them for assertions.
type testWriter struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *testWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// testLogger returns a debug logger writing to t.Log, and its buffer.
func testLogger(t testing.TB) (*slog.Logger, *testWriter) {
	w := &testWriter{t: t}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

// mustParse parses a reference or fails the test.
func mustParse(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// testImage builds an image with one single-file layer per content string.
func testImage(t testing.TB, cfg ociimage.AppConfig, contents ...string) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for i, c := range contents {
		l, err := ociimage.Layer(ociimage.File(fmt.Sprintf("file%d", i), []byte(c), 0o644))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := ociimage.Image(cfg, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// readLayer opens a layer with OpenLayer, reads it to the end and checks
// that the bytes hash to its digest.
func readLayer(t testing.TB, im *Image, l Layer) []byte {
	t.Helper()
	rc, err := im.OpenLayer(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading layer %s: %v", l.Digest, err)
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != l.Digest.String() || int64(len(b)) != l.Size {
		t.Errorf("layer %s: got %d bytes with digest %s, want %d bytes", l.Digest, len(b), got, l.Size)
	}
	return b
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
