package tree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	mk := func(t *testing.T, mutate func(dir string)) map[string]Node {
		dir := t.TempDir()
		must(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "etc/a"), []byte("a"), 0o644))
		must(t, os.Link(filepath.Join(dir, "etc/a"), filepath.Join(dir, "etc/b")))
		must(t, os.Symlink("a", filepath.Join(dir, "etc/l")))
		if mutate != nil {
			mutate(dir)
		}
		s, err := Snapshot(dir)
		must(t, err)
		return s
	}
	base := mk(t, nil)
	if d := Diff(base, mk(t, nil)); len(d) != 0 {
		t.Errorf("identical trees differ: %v", d)
	}
	if n := base["/etc/a"]; len(n.Links) != 2 {
		t.Errorf("hardlink group of /etc/a = %v, want 2 paths", n.Links)
	}
	tests := []struct {
		name   string
		mutate func(dir string)
		want   string
	}{
		{"content", func(d string) { must(t, os.WriteFile(filepath.Join(d, "etc/a"), []byte("b"), 0o644)) }, "/etc/a: content"},
		{"mode", func(d string) { must(t, os.Chmod(filepath.Join(d, "etc/a"), 0o4755)) }, "/etc/a: mode"},
		{"symlink", func(d string) {
			must(t, os.Remove(filepath.Join(d, "etc/l")))
			must(t, os.Symlink("b", filepath.Join(d, "etc/l")))
		}, "/etc/l: symlink target"},
		{"broken hardlink", func(d string) {
			must(t, os.Remove(filepath.Join(d, "etc/b")))
			must(t, os.WriteFile(filepath.Join(d, "etc/b"), []byte("a"), 0o644))
		}, "/etc/b: hardlinks"},
		{"extra", func(d string) { must(t, os.Mkdir(filepath.Join(d, "x"), 0o755)) }, "/x: only in the second tree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Diff(base, mk(t, tt.mutate))
			if !strings.Contains(strings.Join(d, "\n"), tt.want) {
				t.Errorf("diff %q does not mention %q", d, tt.want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
