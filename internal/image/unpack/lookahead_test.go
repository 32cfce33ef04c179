package unpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// applyLookahead applies the layers as pull does: each one knowing what the
// next deletes. It returns the entries skipped.
func (e *testEnv) applyLookahead(t testing.TB, layers ...[]ent) (int, error) {
	t.Helper()
	tars := make([][]byte, len(layers))
	for i, l := range layers {
		tars[i] = e.buildTar(t, l)
	}
	u, err := New(e.root, Options{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	skipped := 0
	for i, data := range tars {
		var next *Doomed
		if i+1 < len(tars) {
			if next, err = ScanDoomed(context.Background(), bytes.NewReader(tars[i+1])); err != nil {
				t.Fatal(err)
			}
		}
		st, err := u.ApplyBefore(context.Background(), bytes.NewReader(data), next)
		if err != nil {
			return skipped, &layerError{i, err}
		}
		skipped += st.Skipped
	}
	return skipped, nil
}

// tree describes every node below root: type, mode, owner, size, content,
// link target, link count, and the mtime of all but directories (a
// directory's changes when a whiteout deletes something in it, that is
// when the pull runs).
func tree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		s := fmt.Sprintf("%o %d:%d %d nlink=%d", st.Mode, st.Uid, st.Gid, st.Size, st.Nlink)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += " " + string(data)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			s += " -> " + l
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			s += fmt.Sprintf(" mtime=%d", st.Mtim.Nano())
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Skipping what the next layer deletes leaves the same tree as creating it,
// and nothing outside the root changes.
func TestLookaheadSameTree(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name     string
		layers   [][]ent
		skipping bool
	}{
		{"whiteout of a tree", [][]ent{
			{dir("keep")},
			{
				dir("w"), file("w/a", "a"), dir("w/d"), file("w/d/b", "b"), fifo("w/fifo"), chardev("w/null", 1, 3),
				hardlink("w/h", "w/a"),
				// Created through a symlink in the deleted tree: survives.
				symlink("w/s", "../keep"), file("w/s/x", "x"),
				file("outside-w", "o"), hardlink("w/h2", "outside-w"),
			},
			{wh(".wh.w")},
		}, true},
		{"whiteout of single files", [][]ent{
			{dir("d"), file("d/a", "a"), file("d/b", "b"), file("d/c", "c")},
			{dir("d"), wh("d/.wh.a"), wh("d/.wh.c"), file("d/new", "n")},
		}, true},
		{"opaque directory", [][]ent{
			{dir("o"), file("o/a", "a"), dir("o/d"), file("o/d/b", "b"), symlink("o/l", "a")},
			{dir("o"), wh("o/.wh..wh..opq"), file("o/new", "n")},
		}, true},
		{"opaque root", [][]ent{
			{dir("d"), file("d/a", "a"), file("top", "t")},
			{wh(".wh..wh..opq"), file("new", "n")},
		}, true},
		{"deleted path reached through a symlink", [][]ent{
			{dir("real"), symlink("link", "real")},
			{file("link/x", "x"), dir("link/sub"), file("link/sub/y", "y")},
			{wh(".wh.link")},
		}, false},
		{"deleted path made a symlink later in the layer", [][]ent{
			{dir("elsewhere")},
			{dir("w"), file("w/a", "a"), symlink("w", "elsewhere"), file("w/b", "b")},
			{wh(".wh.w")},
		}, true},
		{"next layer recreates what it deletes", [][]ent{
			{dir("w"), file("w/a", "a"), file("w/b", "b")},
			{wh(".wh.w"), dir("w"), file("w/a", "new a")},
		}, true},
		{"next layer links into what it deletes", [][]ent{
			{dir("w"), file("w/a", "a")},
			{hardlink("kept", "w/a"), wh(".wh.w")},
		}, false},
		{"type change in the layer below", [][]ent{
			{dir("w"), file("w/f", "old")},
			{file("w/f", "new"), dir("w/f2"), file("w/f2/x", "x"), file("w/f2", "file now")},
			{wh("w/.wh.f"), wh("w/.wh.f2")},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := newEnv(t)
			if err := plain.apply(t, tt.layers...); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t)
			before := e.snapshot(t)
			skipped, err := e.applyLookahead(t, tt.layers...)
			if err != nil {
				t.Fatal(err)
			}
			if tt.skipping != (skipped > 0) {
				t.Errorf("%d entries skipped", skipped)
			}
			want, got := tree(t, plain.root), tree(t, e.root)
			if !maps.Equal(got, want) {
				for p, s := range want {
					if got[p] != s {
						t.Errorf("%s: %q, want %q", p, got[p], s)
					}
				}
				for p, s := range got {
					if _, ok := want[p]; !ok {
						t.Errorf("%s: %q, want nothing", p, s)
					}
				}
			}
			after := e.snapshot(t)
			if !maps.Equal(before, after) {
				t.Error("files outside the root changed")
			}
		})
	}
}

// A hard link outside what the next layer deletes to a file that was
// skipped: ErrSkippedLinkTarget, for the caller to start over.
func TestLookaheadLinkToSkipped(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	_, err := e.applyLookahead(t,
		[]ent{dir("w"), file("w/a", "a"), hardlink("b", "w/a")},
		[]ent{wh(".wh.w")},
	)
	if !errors.Is(err, ErrSkippedLinkTarget) {
		t.Fatalf("got %v, want ErrSkippedLinkTarget", err)
	}
}

func TestScanDoomed(t *testing.T) {
	e := newEnv(t)
	scan := func(ents ...ent) *Doomed {
		t.Helper()
		d, err := ScanDoomed(context.Background(), bytes.NewReader(e.buildTar(t, ents)))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := scan(dir("a"), wh("a/.wh.b"), wh("./c/../.wh.d"), wh("o/.wh..wh..opq"), wh("x/.wh..wh.plnk"), hardlink("l", "a/c"))
	if d == nil {
		t.Fatal("nothing doomed")
	}
	for p, want := range map[string]bool{
		"a/b": true, "a/b/c": true, "a": false, "a/bb": false, "d": true, "d/e": true,
		"o": false, "o/x": true, "o/x/y": true, "x": false, "x/plnk": false, "": false,
	} {
		if got := d.covers(p); got != want {
			t.Errorf("covers(%q) = %v, want %v", p, got, want)
		}
	}
	if d := scan(dir("a"), file("a/f", "x")); d != nil {
		t.Error("a layer without whiteouts dooms something")
	}
	if d := scan(hardlink("l", "a/b/f"), wh("a/.wh.b")); d != nil {
		t.Error("a layer that links into what it deletes dooms something")
	}
	if _, err := ScanDoomed(context.Background(), bytes.NewReader([]byte("not a tar stream, not at all......"))); err == nil {
		t.Error("no error for a bad tar stream")
	}
}
