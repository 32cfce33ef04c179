package cache

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestOpenCreatesLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "cache")
	old := syscall.Umask(0o077) // the modes must not depend on it
	c, err := Open(dir)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		mode fs.FileMode
		want string
	}{
		{path: "", mode: fs.ModeDir | 0o755},
		{path: "blobs", mode: fs.ModeDir | 0o755},
		{path: "blobs/sha256", mode: fs.ModeDir | 0o755},
		{path: "oci-layout", mode: 0o644, want: `{"imageLayoutVersion":"1.0.0"}` + "\n"},
		{path: "index.json", mode: 0o644, want: string(emptyIndexJSON())},
	} {
		p := filepath.Join(dir, tc.path)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
		if tc.want != "" {
			got, _ := os.ReadFile(p)
			if string(got) != tc.want {
				t.Errorf("%s = %q, want %q", tc.path, got, tc.want)
			}
		}
	}
	if got := string(emptyIndexJSON()); !strings.Contains(got, `"manifests": []`) {
		t.Errorf("empty index %s has no manifests array", got)
	}

	// Opening again keeps what is there.
	md, _ := putImage(t, c, "{}", []byte("layer"))
	if err := c.Tag("example.com/a:1", md); err != nil {
		t.Fatal(err)
	}
	c2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	lookup(t, c2, "example.com/a:1")
}

func TestBlobWriter(t *testing.T) {
	data := []byte("hello, blob\n")
	good := digestOf(data)
	other := digestOf([]byte("something else"))
	tests := []struct {
		name    string
		digest  v1.Hash
		size    int64
		write   []byte
		abort   bool
		wantErr error // nil: committed
	}{
		{name: "commit", digest: good, size: int64(len(data)), write: data},
		{name: "unknown size", digest: good, size: -1, write: data},
		{name: "empty blob", digest: digestOf(nil), size: 0, write: nil},
		{name: "abort", digest: good, size: int64(len(data)), write: data, abort: true},
		{name: "digest mismatch", digest: other, size: int64(len(data)), write: data, wantErr: ErrDigestMismatch},
		{name: "too short", digest: good, size: int64(len(data)) + 1, write: data, wantErr: ErrSizeMismatch},
		{name: "too long", digest: good, size: int64(len(data)) - 1, write: data, wantErr: ErrSizeMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			w, err := c.Create(tc.digest, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			_, werr := w.Write(tc.write)
			if w.written > int64(len(tc.write)) {
				t.Errorf("written = %d, more than %d", w.written, len(tc.write))
			}
			var err2 error
			if tc.abort {
				err2 = w.Abort()
			} else {
				err2 = w.Commit()
			}
			if tc.wantErr == nil && (werr != nil || err2 != nil) {
				t.Fatalf("write: %v, commit/abort: %v", werr, err2)
			}
			if tc.wantErr != nil {
				if !errors.Is(err2, tc.wantErr) {
					t.Fatalf("Commit() = %v, want %v", err2, tc.wantErr)
				}
				if !strings.Contains(err2.Error(), tc.digest.String()) {
					t.Errorf("error %q does not name the digest", err2)
				}
				if tc.wantErr == ErrDigestMismatch && !strings.Contains(err2.Error(), good.String()) {
					t.Errorf("error %q does not name the actual digest", err2)
				}
			}
			committed := tc.wantErr == nil && !tc.abort
			if got := c.Stat(tc.digest, tc.size); got != committed {
				t.Errorf("Stat() = %v, want %v", got, committed)
			}
			if committed {
				fi, err := os.Stat(c.Path(tc.digest))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("blob mode %v, want 0644", fi.Mode())
				}
				if err := c.VerifyBlob(t.Context(), tc.digest, tc.size); err != nil {
					t.Error(err)
				}
			} else if _, err := os.Stat(c.Path(tc.digest)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("blob left behind: %v", err)
			}
			if tmp := tempFiles(t, c); len(tmp) > 0 {
				t.Errorf("temp files left: %v", tmp)
			}
			// Abort after Commit/Abort is a no-op; Commit again is an error.
			if err := w.Abort(); err != nil {
				t.Errorf("second Abort() = %v", err)
			}
			if err := w.Commit(); err == nil {
				t.Error("second Commit() succeeded")
			}
		})
	}
}

func TestInvalidDigest(t *testing.T) {
	c := newCache(t)
	good := digestOf([]byte("x"))
	for _, d := range []v1.Hash{
		{Algorithm: "sha512", Hex: good.Hex},
		{Algorithm: "sha256", Hex: "../../etc/passwd"},
		{Algorithm: "sha256", Hex: strings.ToUpper(good.Hex)},
		{Algorithm: "sha256", Hex: good.Hex[:10]},
		{},
	} {
		if _, err := c.Create(d, 1); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Create(%q) = %v, want ErrInvalidDigest", d, err)
		}
		if p := c.Path(d); p != "" {
			t.Errorf("Path(%q) = %q, want empty", d, p)
		}
		if c.Stat(d, -1) {
			t.Errorf("Stat(%q) = true", d)
		}
	}
}

func TestWriteFrom(t *testing.T) {
	c := newCache(t)
	data := bytes.Repeat([]byte("0123456789"), 300_000)
	d := digestOf(data)
	if err := c.WriteFrom(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if !c.Stat(d, int64(len(data))) {
		t.Error("blob missing after WriteFrom")
	}

	// A cancelled context stops the copy and leaves nothing.
	c = newCache(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{r: bytes.NewReader(data), n: 1 << 20, cancel: cancel}
	err := c.WriteFrom(ctx, d, int64(len(data)), r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteFrom() = %v, want context.Canceled", err)
	}
	if c.Stat(d, -1) || len(tempFiles(t, c)) > 0 {
		t.Error("cancelled WriteFrom left a blob or a temp file")
	}

	// A reader with too much data fails without a doubled message.
	err = c.WriteFrom(context.Background(), d, 5, bytes.NewReader(data))
	if !errors.Is(err, ErrSizeMismatch) || strings.Count(err.Error(), d.String()) != 1 {
		t.Errorf("WriteFrom(too long) = %v", err)
	}
}

// cancelAfter calls cancel once n bytes have been read.
type cancelAfter struct {
	r      *bytes.Reader
	n      int
	cancel func()
}

func (r *cancelAfter) Read(p []byte) (int, error) {
	m, err := r.r.Read(p)
	r.n -= m
	if r.n <= 0 {
		r.cancel()
	}
	return m, err
}

func TestCorruptBlobs(t *testing.T) {
	data := bytes.Repeat([]byte("layer data "), 1000)
	size := int64(len(data))
	tests := []struct {
		name     string
		damage   func(p string) error
		stat     bool  // Stat(d, size) after the damage
		verify   error // VerifyBlob(d, size) after the damage
		survives bool  // file still there after Stat and VerifyBlob
	}{
		{
			name:   "intact",
			damage: func(string) error { return nil },
			stat:   true, survives: true,
		},
		{
			name:   "bit flip",
			damage: func(p string) error { return flipByte(p, 100) },
			// Same size: Stat trusts it, Verify finds out.
			stat: true, verify: ErrDigestMismatch,
		},
		{
			name:   "truncated",
			damage: func(p string) error { return os.Truncate(p, size/2) },
			verify: fs.ErrNotExist, // Stat already deleted it
		},
		{
			name:   "grown",
			damage: func(p string) error { return appendTo(p, "junk") },
			verify: fs.ErrNotExist,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			d := putBlob(t, c, "", data).Digest
			if err := tc.damage(c.Path(d)); err != nil {
				t.Fatal(err)
			}
			if got := c.Stat(d, size); got != tc.stat {
				t.Errorf("Stat() = %v, want %v", got, tc.stat)
			}
			err := c.VerifyBlob(t.Context(), d, size)
			if tc.verify == nil && err != nil || tc.verify != nil && !errors.Is(err, tc.verify) {
				t.Errorf("Verify() = %v, want %v", err, tc.verify)
			}
			_, serr := os.Stat(c.Path(d))
			if survives := serr == nil; survives != tc.survives {
				t.Errorf("blob still there: %v, want %v", survives, tc.survives)
			}
		})
	}
}

func TestStatWrongSizeKeepsGoodBlob(t *testing.T) {
	// A caller's wrong size does not cost a correct blob.
	c := newCache(t)
	data := []byte("correct content")
	d := putBlob(t, c, "", data).Digest
	if c.Stat(d, 3) {
		t.Error("Stat with a wrong size = true")
	}
	if !c.Stat(d, int64(len(data))) {
		t.Error("correct blob was deleted")
	}
	if err := c.VerifyBlob(t.Context(), d, 3); !errors.Is(err, ErrSizeMismatch) || errors.Is(err, ErrDigestMismatch) {
		t.Errorf("VerifyBlob(wrong size) = %v, want ErrSizeMismatch only", err)
	}
	if !c.Stat(d, int64(len(data))) {
		t.Error("VerifyBlob with a wrong size deleted a correct blob")
	}
}

func TestReadBlob(t *testing.T) {
	c := newCache(t)
	data := []byte(`{"a":1}`)
	d := putBlob(t, c, "", data).Digest
	got, err := c.ReadBlob(d)
	if err != nil || string(got) != string(data) {
		t.Fatalf("ReadBlob() = %q, %v", got, err)
	}
	if err := flipByte(c.Path(d), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadBlob(d); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("ReadBlob(corrupt) = %v", err)
	}
	if _, err := c.ReadBlob(d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadBlob(after corrupt) = %v, want not exist", err)
	}
}

func flipByte(p string, off int64) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	return err
}

func appendTo(p, s string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}

func TestConcurrentWritersGoroutines(t *testing.T) {
	c := newCache(t)
	data := bytes.Repeat([]byte("concurrent "), 200_000)
	d := digestOf(data)
	var wg sync.WaitGroup
	errs := make(chan error, 8*5)
	for range 8 {
		wg.Go(func() {
			for range 5 {
				errs <- c.WriteFrom(context.Background(), d, int64(len(data)), bytes.NewReader(data))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := c.VerifyBlob(t.Context(), d, int64(len(data))); err != nil {
		t.Error(err)
	}
	if tmp := tempFiles(t, c); len(tmp) > 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}

func TestConcurrentWritersProcesses(t *testing.T) {
	c := newCache(t)
	data := bytes.Repeat([]byte("two processes "), 300_000)
	d := digestOf(data)
	src := filepath.Join(t.TempDir(), "content")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for range 2 {
		cmd := helper(t, "write", c.Dir(), src)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// This process writes too, and reads the blob whenever it is there.
	for range 20 {
		if err := c.WriteFrom(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Error(err)
		}
		if got, err := os.ReadFile(c.Path(d)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("blob read during concurrent writes: %d bytes, %v", len(got), err)
		}
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}
	if err := c.VerifyBlob(t.Context(), d, int64(len(data))); err != nil {
		t.Error(err)
	}
	if tmp := tempFiles(t, c); len(tmp) > 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}
