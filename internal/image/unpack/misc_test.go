package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestApplyMalformed feeds streams that are not valid tar archives: each
// must fail with a clear error and leave everything outside the root as
// it was.
func TestApplyMalformed(t *testing.T) {
	valid := func(t *testing.T, e *testEnv) []byte {
		return e.buildTar(t, []ent{dir("d"), file("d/f", strings.Repeat("x", 1000)), file("g", "")})
	}
	tests := []struct {
		name    string
		data    func(t *testing.T, e *testEnv) []byte
		wantErr string
	}{
		{"empty stream", func(*testing.T, *testEnv) []byte { return nil }, "without an end-of-archive marker"},
		{"cut at a block boundary", func(t *testing.T, e *testEnv) []byte {
			b := valid(t, e)
			return b[:len(b)-1024]
		}, "without an end-of-archive marker"},
		{"cut inside a file", func(t *testing.T, e *testEnv) []byte { return valid(t, e)[:512+512+600] }, "unexpected EOF"},
		{"cut inside a header", func(t *testing.T, e *testEnv) []byte { return valid(t, e)[:700] }, "unexpected EOF"},
		{"garbage", func(*testing.T, *testEnv) []byte { return bytes.Repeat([]byte("garbage!"), 200) }, "invalid tar header"},
		{"bad checksum", func(t *testing.T, e *testEnv) []byte {
			b := valid(t, e)
			b[0] ^= 1
			return b
		}, "invalid tar header"},
		{"PAX header over 1 MiB", func(t *testing.T, e *testEnv) []byte {
			// archive/tar refuses to write one: write a regular file and
			// turn its header into a PAX extended header.
			b := e.buildTar(t, []ent{file("f", strings.Repeat("9", 2<<20))})
			b[156] = tar.TypeXHeader
			copy(b[148:156], "        ")
			var sum int
			for _, c := range b[:512] {
				sum += int(c)
			}
			copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
			return b
		}, "header field too long"},
		{"xattr value too large for the kernel", func(t *testing.T, e *testEnv) []byte {
			return e.buildTar(t, []ent{file("f", "").with(func(e *ent) { e.xattrs = map[string]string{"user.big": strings.Repeat("x", 70<<10)} })})
		}, "extended attribute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			data := tc.data(t, e)
			before := e.snapshot(t)
			err := e.applyRaw(t, data)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Apply: %v, want an error containing %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(before, e.snapshot(t)); diff != "" {
				t.Errorf("files outside the root changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestApplyLoneZeroBlock(t *testing.T) {
	e := newEnv(t)
	b := e.buildTar(t, []ent{file("f", "x")})
	if err := e.applyRaw(t, b[:len(b)-512]); err != nil {
		t.Errorf("Apply with a single zero block at the end: %v", err)
	}
}

func TestApplyStats(t *testing.T) {
	e := newEnv(t)
	data := e.buildTar(t, []ent{
		dir("d"), file("d/f", "12345"), file("g", "678"), symlink("l", "g"), hardlink("h", "g"),
		fifo("p"), wh(".wh.x"), wh("d/.wh..wh..opq"), wh(".wh..wh.plnk"),
	})
	u, err := New(e.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	got, err := u.Apply(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Entries: 9, Files: 2, Dirs: 1, Symlinks: 1, Hardlinks: 1, Devices: 1, Whiteouts: 2, Bytes: 8}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// cancelReader cancels its context once n bytes have been read.
type cancelReader struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestApplyCancel(t *testing.T) {
	e := newEnv(t)
	var ents []ent
	for i := range 8 {
		ents = append(ents, file("f"+strings.Repeat("x", i), strings.Repeat("y", 2<<20)))
	}
	data := e.buildTar(t, ents)
	u, err := New(e.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = u.Apply(ctx, &cancelReader{r: bytes.NewReader(data), n: 5 << 20, cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply: %v, want context.Canceled", err)
	}
}

func TestNewAndClose(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Error("New on a missing directory succeeded")
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(f, Options{}); err == nil {
		t.Error("New on a file succeeded")
	}
	u, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := u.Apply(context.Background(), bytes.NewReader(nil)); err == nil {
		t.Error("Apply after Close succeeded")
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":              "",
		".":             "",
		"./":            "",
		"/":             "",
		"..":            "",
		"../..":         "",
		"a":             "a",
		"a/":            "a",
		"./a/b/":        "a/b",
		"/a/b":          "a/b",
		"a//b":          "a/b",
		"a/./b":         "a/b",
		"a/../b":        "b",
		"../../etc/x":   "etc/x",
		"a/b/../../../": "",
		"...":           "...",
		"a/.wh..wh.opq": "a/.wh..wh.opq",
		"./././a":       "a",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}
