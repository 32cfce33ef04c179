package corpus

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/man8s/mbctl/internal/testbed/ci"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// requireDpkg skips (fails under CI) where the host has no dpkg database:
// the corpus is made of installed Debian packages.
func requireDpkg(t *testing.T, pkgs ...string) {
	t.Helper()
	for _, tool := range []string{"dpkg-query", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			ci.Skip(t, "no %s: the corpus is built from installed Debian packages", tool)
		}
	}
	for _, p := range pkgs {
		if _, err := packageFiles(t.Context(), p); err != nil {
			ci.Skip(t, "%v", err)
		}
	}
}

// layerFiles maps each path of image layer i to its tar header.
func layerFiles(t *testing.T, img v1.Image, i int) map[string]*tar.Header {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[i].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

func TestPatterns(t *testing.T) {
	pats := []string{"/usr/lib/pg/", "/usr/lib/pg/lib/llvmjit*", "/usr/bin/tini"}
	for p, want := range map[string]bool{
		"/usr/lib/pg": true, "/usr/lib/pg/bin/postgres": true, "/usr/lib/pgx": false,
		"/usr/lib/pg/lib/llvmjit.so": true, "/usr/lib/pg/lib/llvmjit_types.bc": true,
		"/usr/bin/tini": true, "/usr/bin/tini-static": false,
	} {
		if got := hasAnyPrefix(p, pats); got != want {
			t.Errorf("hasAnyPrefix(%q) = %v, want %v", p, got, want)
		}
	}
	s := pkgFiles{Package: "x", Include: []string{"/usr/"}, Exclude: []string{"/usr/lib/"}}
	for p, want := range map[string]bool{"/usr/bin/x": true, "/usr/lib/x": false, "/etc/x": false, "/usr/share/doc/x/copyright": false} {
		if got := s.takes(p); got != want {
			t.Errorf("takes(%q) = %v, want %v", p, got, want)
		}
	}
}

// The top layer: the files/ trees at their paths, scripts executable, the
// code's entries winning, parents before children.
func TestTreeEntries(t *testing.T) {
	es, err := treeEntries([]string{"notes"}, []ociimage.Entry{
		ownedDir("data", 0o755, 65532, 65532),
		ociimage.File("srv/www/index.html", []byte("mine"), 0o600),
		ociimage.File("deep/new/file", nil, 0o644),
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]ociimage.Entry{}
	for _, e := range es {
		n := strings.TrimSuffix(e.Path, "/")
		names = append(names, n)
		byName[n] = e
	}
	want := []string{"app", "app/serve.sh", "data", "deep", "deep/new", "deep/new/file", "srv", "srv/www", "srv/www/cgi-bin", "srv/www/cgi-bin/note", "srv/www/index.html"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	for n, mode := range map[string]int64{"app/serve.sh": 0o755, "srv/www/cgi-bin/note": 0o755, "srv/www/index.html": 0o600, "app": 0o755} {
		if byName[n].Mode != mode {
			t.Errorf("%s: mode %o, want %o", n, byName[n].Mode, mode)
		}
	}
	if e := byName["data"]; e.UID != 65532 || e.Type != tar.TypeDir {
		t.Errorf("data: %+v, want the code's dir owned by 65532", e)
	}
	if string(byName["srv/www/index.html"].Content) != "mine" {
		t.Error("the code's entry did not win over the tree's file")
	}
}

func TestCacheKey(t *testing.T) {
	a, err := cacheKey("redis", []string{"gosu=1", "redis-server=7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range [][2]any{
		{"redis", []string{"gosu=1", "redis-server=8"}},
		{"redis", []string{"gosu=1"}},
		{"nginx", []string{"gosu=1", "redis-server=7"}},
	} {
		b, err := cacheKey(other[0].(string), other[1].([]string))
		if err != nil {
			t.Fatal(err)
		}
		if a == b {
			t.Errorf("key of %v equals that of redis with gosu=1 redis-server=7", other)
		}
	}
	if again, _ := cacheKey("redis", []string{"gosu=1", "redis-server=7"}); again != a {
		t.Error("the same packages gave another key")
	}
}

// smallImage is a one-layer image whose content is s.
func smallImage(t *testing.T, s string) v1.Image {
	t.Helper()
	l, err := ociimage.Layer(ociimage.File("f", []byte(s), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image(ociimage.AppConfig{Cmd: []string{"/f"}}, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// The cache: a stored image reads back with its digest, a new key of a
// replica replaces the old one, and an entry with a damaged blob is not
// taken for a hit.
func TestCacheStoreLoad(t *testing.T) {
	dir := t.TempDir()
	key1, key2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	if _, err := loadCached(dir, "x", key1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty cache: %v, want ErrNotExist", err)
	}
	img := smallImage(t, "one")
	want, _ := img.Digest()
	got, err := store(dir, "x", key1, img, []string{"p=1"})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("stored image digest %s, want %s", d, want)
	}
	again, err := loadCached(dir, "x", key1)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Errorf("loaded image digest %s, want %s", d, want)
	}
	if b, err := os.ReadFile(filepath.Join(entryDir(dir, "x", key1), "packages.txt")); err != nil || !strings.Contains(string(b), "p=1\n") {
		t.Errorf("packages.txt: %q, %v", b, err)
	}

	if _, err := store(dir, "x", key2, smallImage(t, "two"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCached(dir, "x", key1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the old key is still cached: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "x"))
	if len(ents) != 1 {
		t.Errorf("the replica's cache dir holds %d entries, want 1", len(ents))
	}

	// A damaged blob: the entry is unusable, not missing.
	two, err := loadCached(dir, "x", key2)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := two.Manifest()
	blob := filepath.Join(entryDir(dir, "x", key2), "blobs", "sha256", m.Layers[0].Digest.Hex)
	if err := os.Truncate(blob, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCached(dir, "x", key2); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a truncated blob: %v, want an error other than ErrNotExist", err)
	}
}

// Collecting a package: its program, the libraries it loads at their
// merged-/usr paths, and the packages they come from.
func TestCollectPackage(t *testing.T) {
	requireDpkg(t, "tini")
	c, err := collect(t.Context(), []pkgFiles{{Package: "tini", Include: []string{"/usr/bin/tini"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.files["usr/bin/tini"]; !ok {
		t.Errorf("usr/bin/tini not collected: %v", sortedKeys(c.files))
	}
	if _, ok := c.files["usr/bin/tini-static"]; ok {
		t.Error("usr/bin/tini-static collected, but only /usr/bin/tini was asked for")
	}
	var libc bool
	for img := range c.files {
		libc = libc || strings.HasSuffix(img, "/libc.so.6")
		if fi, err := os.Lstat("/lib"); err == nil && fi.Mode()&fs.ModeSymlink != 0 && strings.HasPrefix(img, "lib/") {
			t.Errorf("%s lies under the /lib link, not at its real path", img)
		}
	}
	if !libc {
		t.Errorf("libc.so.6 not collected: %v", sortedKeys(c.files))
	}
	pkgs := sortedKeys(c.packages)
	if !slices.Contains(pkgs, "tini") || !slices.ContainsFunc(pkgs, func(p string) bool { return strings.HasPrefix(p, "libc6") }) {
		t.Errorf("packages %v, want tini and libc6", pkgs)
	}
	es, err := c.entries()
	if err != nil {
		t.Fatal(err)
	}
	if es[0].Type != tar.TypeDir {
		t.Errorf("the first entry %q is not a directory", es[0].Path)
	}
}

// The FROM-scratch replica: built once, then read from the cache with the
// same digest; its tree is the image's only (no /usr, no shell) and its
// USER is numeric.
func TestBuildStaticScratch(t *testing.T) {
	requireDpkg(t, "busybox-static")
	bb := ociimage.StaticBusyboxT(t)
	b, err := New(WithCacheDir(t.TempDir()), WithBusybox(bb), WithLog(t.Logf))
	if err != nil {
		t.Fatal(err)
	}
	first, err := b.Build(t.Context(), StaticScratch)
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Build(t.Context(), StaticScratch)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Image.Digest()
	d2, _ := second.Image.Digest()
	if first.Cached || !second.Cached || d1 != d2 || first.Key != second.Key {
		t.Errorf("builds: cached %v then %v, digests %s and %s; want a build, then the same image from the cache", first.Cached, second.Cached, d1, d2)
	}
	if !slices.ContainsFunc(first.Packages, func(p string) bool { return strings.HasPrefix(p, "busybox-static=") }) {
		t.Errorf("packages %v lack busybox-static", first.Packages)
	}
	cf, err := second.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532" || cf.Config.Entrypoint[0] != "/httpd" {
		t.Errorf("config: user %q entrypoint %q", cf.Config.User, cf.Config.Entrypoint)
	}
	flat := mutate.Extract(second.Image)
	defer flat.Close()
	tops := map[string]bool{}
	tr := tar.NewReader(flat)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tops[strings.SplitN(strings.TrimPrefix(h.Name, "/"), "/", 2)[0]] = true
	}
	if diff := cmp.Diff([]string{"etc", "httpd", "www"}, sortedKeys(tops)); diff != "" {
		t.Errorf("top-level entries (-want +got):\n%s", diff)
	}
	top := layerFiles(t, second.Image, 1)
	if h := top["www/files"]; h == nil || h.Uid != 65532 {
		t.Errorf("www/files: %+v, want a dir of 65532", h)
	}
}

func TestUnknownReplica(t *testing.T) {
	b, err := New(WithCacheDir(""), WithBusybox("/nonexistent/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(t.Context(), "mysql"); err == nil || !strings.Contains(err.Error(), "no replica named") {
		t.Errorf("Build(mysql) = %v", err)
	}
}
