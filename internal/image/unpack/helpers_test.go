package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"golang.org/x/sys/unix"
)

// ent describes one tar entry of a test layer. In name and link, $OUT,
// $TMP and $TMPREL stand for the absolute path of the directory outside
// the root, of the temp dir holding everything, and of the latter without
// its leading slash.
type ent struct {
	typ          byte
	name, link   string
	body         string
	mode         int64
	uid, gid     int
	mtime        time.Time
	xattrs       map[string]string
	major, minor int64
	format       tar.Format
}

var testTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

func file(name, body string) ent { return ent{typ: tar.TypeReg, name: name, body: body, mode: 0o644} }
func dir(name string) ent        { return ent{typ: tar.TypeDir, name: name, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{typ: tar.TypeSymlink, name: name, link: target, mode: 0o777}
}
func hardlink(name, target string) ent {
	return ent{typ: tar.TypeLink, name: name, link: target, mode: 0o644}
}
func wh(name string) ent { return ent{typ: tar.TypeReg, name: name, mode: 0o600} }
func fifo(name string) ent {
	return ent{typ: tar.TypeFifo, name: name, mode: 0o600}
}
func chardev(name string, major, minor int64) ent {
	return ent{typ: tar.TypeChar, name: name, mode: 0o666, major: major, minor: minor}
}

// with returns e changed by f, to set fields in a table row.
func (e ent) with(f func(*ent)) ent {
	f(&e)
	return e
}

// testEnv is a temp dir holding the root and, next to it, host files that
// no layer may change.
type testEnv struct {
	tmp, root, outside, tmpRel string
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{
		tmp:     tmp,
		root:    filepath.Join(tmp, "root"),
		outside: filepath.Join(tmp, "outside"),
		tmpRel:  strings.TrimPrefix(tmp, "/"),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(tmp, "sentinel.txt"), []byte("host file"), 0o644))
	must(os.Mkdir(e.outside, 0o755))
	must(os.WriteFile(filepath.Join(e.outside, "secret"), []byte("secret"), 0o600))
	must(os.Mkdir(filepath.Join(e.outside, "sub"), 0o700))
	must(os.WriteFile(filepath.Join(e.outside, "sub", "file"), []byte("sub file"), 0o640))
	must(os.Symlink("secret", filepath.Join(e.outside, "link")))
	must(unix.Mkfifo(filepath.Join(e.outside, "fifo"), 0o600))
	if os.Geteuid() == 0 {
		for _, p := range []string{"sentinel.txt", "outside/secret", "outside/sub", "outside/sub/file"} {
			must(os.Lchown(filepath.Join(tmp, p), 4321, 4321))
		}
	}
	for _, p := range []string{"sentinel.txt", "outside/secret", "outside/sub/file", "outside/sub", "outside"} {
		must(os.Chtimes(filepath.Join(tmp, p), testTime, testTime))
	}
	must(os.Mkdir(e.root, 0o755))
	return e
}

func (e *testEnv) expand(s string) string {
	return strings.NewReplacer("$OUT", e.outside, "$TMPREL", e.tmpRel, "$TMP", e.tmp).Replace(s)
}

// path is the host path of rel inside the root (rel expanded).
func (e *testEnv) path(rel string) string {
	return filepath.Join(e.root, e.expand(rel))
}

// buildTar writes ents as a tar stream. If the test does not run as root,
// owners are the current user's.
func (e *testEnv) buildTar(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range ents {
		hdr := &tar.Header{
			Typeflag: en.typ,
			Name:     e.expand(en.name),
			Linkname: e.expand(en.link),
			Mode:     en.mode,
			Uid:      en.uid,
			Gid:      en.gid,
			ModTime:  en.mtime,
			Devmajor: en.major,
			Devminor: en.minor,
			Format:   en.format,
		}
		if en.typ == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Typeflag: en.typ, Name: hdr.Name, PAXRecords: map[string]string{"comment": "global"}}
		} else if hdr.ModTime.IsZero() {
			hdr.ModTime = testTime
		}
		if os.Geteuid() != 0 && en.typ != tar.TypeXGlobalHeader {
			hdr.Uid, hdr.Gid = os.Getuid(), os.Getgid()
		}
		if en.typ == tar.TypeReg {
			hdr.Size = int64(len(en.body))
		}
		if len(en.xattrs) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range en.xattrs {
				hdr.PAXRecords[paxXattrPrefix+k] = v
			}
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("writing header %q: %v", hdr.Name, err)
		}
		if en.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(en.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// apply applies the layers in order to the root with a fresh Unpacker
// and returns the first error.
func (e *testEnv) apply(t testing.TB, layers ...[]ent) error {
	t.Helper()
	tars := make([][]byte, len(layers))
	for i, l := range layers {
		tars[i] = e.buildTar(t, l)
	}
	return e.applyRaw(t, tars...)
}

func (e *testEnv) applyRaw(t testing.TB, tars ...[]byte) error {
	t.Helper()
	u, err := New(e.root, Options{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for i, data := range tars {
		if _, err := u.Apply(context.Background(), bytes.NewReader(data)); err != nil {
			return &layerError{i, err}
		}
	}
	return nil
}

type layerError struct {
	layer int
	err   error
}

func (e *layerError) Error() string { return fmt.Sprintf("layer %d: %v", e.layer, e.err) }
func (e *layerError) Unwrap() error { return e.err }

// nodeState is what must not change about a file outside the root.
type nodeState struct {
	Mode         uint32
	Uid, Gid     uint32
	Nlink        uint64
	Ino          uint64
	Rdev         uint64
	Size         int64
	Mtime, Ctime int64
	Data, Link   string
	Xattrs       string
}

// snapshot records every file below the temp dir except the root.
func (e *testEnv) snapshot(t testing.TB) map[string]nodeState {
	t.Helper()
	out := map[string]nodeState{}
	err := filepath.WalkDir(e.tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == e.root {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		s := nodeState{
			Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Nlink: st.Nlink, Ino: st.Ino, Rdev: st.Rdev,
			Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s.Data = string(data)
		case unix.S_IFLNK:
			s.Link, _ = os.Readlink(p)
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			s.Xattrs = string(buf[:n])
		}
		out[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// requireRoot skips a test that needs root (chown to other users, mknod,
// trusted.* and security.* attributes), except in CI where it fails.
func requireRoot(t testing.TB) {
	t.Helper()
	ci.RequireRoot(t, "chown, mknod, trusted.* and security.* xattrs")
}

func testLogger(t testing.TB) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// Assertions on the root.

func lstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func wantFile(t testing.TB, e *testEnv, rel, body string) {
	t.Helper()
	p := e.path(rel)
	st := lstat(t, p)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("%s: mode %o, want a regular file", rel, st.Mode)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != body {
		t.Errorf("%s = %q, want %q", rel, shorten(string(data)), shorten(body))
	}
}

func wantType(t testing.TB, e *testEnv, rel string, typ uint32) unix.Stat_t {
	t.Helper()
	st := lstat(t, e.path(rel))
	if st.Mode&unix.S_IFMT != typ {
		t.Errorf("%s: type %o, want %o", rel, st.Mode&unix.S_IFMT, typ)
	}
	return st
}

func wantSymlink(t testing.TB, e *testEnv, rel, target string) {
	t.Helper()
	got, err := os.Readlink(e.path(rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	if want := e.expand(target); got != want {
		t.Errorf("%s -> %q, want %q", rel, got, want)
	}
}

func wantMissing(t testing.TB, e *testEnv, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if _, err := os.Lstat(e.path(rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists (%v), want it gone", rel, err)
		}
	}
}

func wantMode(t testing.TB, e *testEnv, rel string, mode uint32) {
	t.Helper()
	if st := lstat(t, e.path(rel)); st.Mode&0o7777 != mode {
		t.Errorf("%s: mode %04o, want %04o", rel, st.Mode&0o7777, mode)
	}
}

func wantSameInode(t testing.TB, e *testEnv, rels ...string) {
	t.Helper()
	first := lstat(t, e.path(rels[0]))
	for _, rel := range rels[1:] {
		if st := lstat(t, e.path(rel)); st.Ino != first.Ino || st.Dev != first.Dev {
			t.Errorf("%s and %s are not the same inode", rels[0], rel)
		}
	}
}

func wantDirEntries(t testing.TB, e *testEnv, rel string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(e.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range ents {
		got = append(got, de.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", rel, got, names)
	}
}
