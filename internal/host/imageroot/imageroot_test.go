package imageroot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/fsutil"
)

func TestPath(t *testing.T) {
	s := Store{Dir: "/s"}
	for _, tt := range []struct {
		digest, want string
		ok           bool
	}{
		{"sha256:abc", "/s/sha256-abc", true},
		{"sha256", "", false},
		{":abc", "", false},
		{"sha256:a/b", "", false},
		{"sha256:a:b", "", false},
	} {
		got, err := s.Path(tt.digest)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Path(%q) = %q, %v", tt.digest, got, err)
		}
		if tt.ok && s.DigestOf(got) != tt.digest {
			t.Errorf("DigestOf(%q) = %q, want %q", got, s.DigestOf(got), tt.digest)
		}
	}
}

// mkRoot makes a root as Ensure leaves it: the tree and its record.
func mkRoot(t *testing.T, s Store, digest, ref string) string {
	t.Helper()
	p, err := s.Path(digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsutil.WriteFileAtomic(p+recordSuffix, []byte(`{"ref": "`+ref+`", "size": 3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDigestOfElsewhere(t *testing.T) {
	s := Store{Dir: "/s"}
	for _, p := range []string{"/other/sha256-abc", "/s/.chains", "/s/nodash", "/s/sub/sha256-abc"} {
		if d := s.DigestOf(p); d != "" {
			t.Errorf("DigestOf(%q) = %q, want none", p, d)
		}
	}
}

func TestListLookupFree(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	pa, pb := mkRoot(t, s, a, "x:1"), mkRoot(t, s, b, "x:2")
	// A staging dir and the lock are not roots.
	if err := os.Mkdir(filepath.Join(s.Dir, ".sha256-c"+stagingMark+"1"), 0o700); err != nil {
		t.Fatal(err)
	}
	roots, err := s.List()
	if err != nil || len(roots) != 2 || roots[0].Digest != a || roots[0].Ref != "x:1" || roots[1].Path != pb || roots[0].Size != 3 {
		t.Fatalf("List = %+v, %v", roots, err)
	}
	if r, err := s.Lookup("sha256:" + strings.Repeat("d", 64)); r != nil || err != nil {
		t.Errorf("Lookup of a missing root = %v, %v", r, err)
	}

	// Busy: a run holds the shared lock.
	release, err := s.Use()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Free(nil, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("Free while a run uses the store: %v, want ErrBusy", err)
	}
	release()
	release() // harmless

	// Only the unused one of the candidates goes.
	freed, err := s.Free(map[string][]string{a: {"web"}}, []string{a, b})
	if err != nil || len(freed) != 1 || freed[0].Digest != b {
		t.Fatalf("Free = %+v, %v", freed, err)
	}
	for p, want := range map[string]bool{pa: true, pb: false, pb + recordSuffix: false} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
	if freed, _ := s.Free(nil, []string{b}); len(freed) != 0 {
		t.Errorf("a root outside the candidates was freed: %v", freed)
	}
}

func TestMountPoints(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An image's resolv.conf link is left alone.
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	if err := mountPoints(root, map[string]struct{}{"/var/lib/app": {}, "/data/": {}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"man8env.env", "var/lib/app", "data"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(root, "etc/resolv.conf")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("resolv.conf link replaced: %v", err)
	}
}
