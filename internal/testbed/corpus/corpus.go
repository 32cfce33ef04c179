// Package corpus builds the e2e suite's replicas of real images: postgres,
// nginx and redis as their official images are made, and the image shapes
// that break naive runtimes (FROM scratch with a numeric USER, tini as the
// ENTRYPOINT with USER nonroot, an app that listens on IPv4 only). They are
// made of the host's installed Debian packages only (the package files a
// replica needs, and the libraries its programs load, as ldd finds them),
// with the real images' ENTRYPOINT, CMD, ENV, VOLUME, EXPOSE, STOPSIGNAL,
// USER and WORKDIR, and entrypoint scripts of ours written in the spirit of
// theirs (files/).
//
// Built images are kept on disk as OCI image layouts, keyed by the versions
// of every Debian package a replica takes files from and by the source of
// this package (its code and files/), so that a run in which nothing
// changed reads them instead of building them again.
//
// The package does not import testing.
package corpus

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// files holds the replicas' own files, and sources the whole builder, whose
// hash is part of every cache key.
var (
	//go:embed all:files
	files embed.FS
	//go:embed *.go all:files
	sources embed.FS
)

// CacheEnv names the environment variable that sets the cache directory;
// "off" turns the cache off.
const CacheEnv = "MBCTL_TEST_CORPUS_CACHE"

// DefaultCacheDir is the cache directory: $MBCTL_TEST_CORPUS_CACHE, else
// $XDG_CACHE_HOME/mbctl-test-corpus, else /var/cache/mbctl-test-corpus
// (where a CI machine that keeps /var/cache keeps it between runs). It is
// "" when $MBCTL_TEST_CORPUS_CACHE is "off".
func DefaultCacheDir() string {
	switch v := os.Getenv(CacheEnv); {
	case v == "off":
		return ""
	case v != "":
		return v
	}
	if x := os.Getenv("XDG_CACHE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "mbctl-test-corpus")
	}
	return "/var/cache/mbctl-test-corpus"
}

// Option configures a Builder.
type Option func(*options) error

type options struct {
	cacheDir string
	busybox  string
	logf     func(format string, args ...any)
}

// WithCacheDir keeps built images in dir (created when missing); "" builds
// every time. Default: DefaultCacheDir().
func WithCacheDir(dir string) Option {
	return func(o *options) error {
		if dir != "" && !filepath.IsAbs(dir) {
			return fmt.Errorf("cache dir %q: not an absolute path", dir)
		}
		o.cacheDir = dir
		return nil
	}
}

// WithBusybox sets the static busybox the replicas' userland and the
// FROM-scratch server are made of. Default: ociimage.StaticBusybox().
func WithBusybox(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("busybox: empty path")
		}
		o.busybox = path
		return nil
	}
}

// WithLog reports what the builder does (a build, a cache hit) to logf.
// Default: nothing.
func WithLog(logf func(format string, args ...any)) Option {
	return func(o *options) error {
		o.logf = logf
		return nil
	}
}

// Builder builds replicas. It is safe for concurrent use.
type Builder struct {
	opts options
	// locks holds one mutex per replica, so that concurrent builds of one
	// replica build it once.
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// New returns a Builder.
func New(opts ...Option) (*Builder, error) {
	o := options{cacheDir: DefaultCacheDir(), logf: func(string, ...any) {}}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.busybox == "" {
		bb, err := ociimage.StaticBusybox()
		if err != nil {
			return nil, err
		}
		o.busybox = bb
	}
	return &Builder{opts: o, locks: map[string]*sync.Mutex{}}, nil
}

// Built is a built replica.
type Built struct {
	// Name is the replica's name.
	Name string
	// Image is the image, read from the cache when there is one.
	Image v1.Image
	// Packages are the Debian packages it holds files of, "name=version".
	Packages []string
	// Key is its cache key; Cached says whether it came from the cache.
	Key    string
	Cached bool
}

// Build returns the replica name (one of Names), from the cache when the
// cache holds it for this host's packages and this builder's source.
func (b *Builder) Build(ctx context.Context, name string) (*Built, error) {
	b.mu.Lock()
	l, ok := b.locks[name]
	if !ok {
		l = &sync.Mutex{}
		b.locks[name] = l
	}
	b.mu.Unlock()
	l.Lock()
	defer l.Unlock()

	s, err := specFor(ctx, name, b.opts.busybox)
	if err != nil {
		return nil, err
	}
	p, err := plan(ctx, s, b.opts.busybox)
	if err != nil {
		return nil, fmt.Errorf("planning replica %s: %w", name, err)
	}
	key, err := cacheKey(name, p.packages)
	if err != nil {
		return nil, err
	}
	built := &Built{Name: name, Packages: p.packages, Key: key}
	if b.opts.cacheDir != "" {
		img, err := loadCached(b.opts.cacheDir, name, key)
		if err == nil {
			b.opts.logf("corpus: %s: from the cache (%s)", name, key[:16])
			built.Image, built.Cached = img, true
			return built, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			b.opts.logf("corpus: %s: cache entry unusable, building again: %v", name, err)
		}
	}
	b.opts.logf("corpus: %s: building from %d Debian packages", name, len(p.packages))
	img, err := p.build(s.config)
	if err != nil {
		return nil, fmt.Errorf("building replica %s: %w", name, err)
	}
	if b.opts.cacheDir != "" {
		if img, err = store(b.opts.cacheDir, name, key, img, p.packages); err != nil {
			return nil, fmt.Errorf("caching replica %s: %w", name, err)
		}
	}
	built.Image = img
	return built, nil
}

// layerPlan is what a replica's layers will hold.
type layerPlan struct {
	base     []ociimage.Entry // nil without the userland
	host     *collection      // nil without host files
	top      []ociimage.Entry
	packages []string // "name=version", sorted
}

// plan resolves a spec on this host: which files, from which packages, at
// which versions. The base and top layers are small and made here; the
// host files are only listed.
func plan(ctx context.Context, s spec, busybox string) (*layerPlan, error) {
	p := &layerPlan{}
	var owners []string
	if s.base {
		base, err := baseEntries(busybox)
		if err != nil {
			return nil, err
		}
		p.base = base
		bbOwners, err := owningPackages(ctx, []string{busybox})
		if err != nil {
			return nil, err
		}
		owners = append(owners, bbOwners...)
	}
	if len(s.packages) > 0 || len(s.renames) > 0 {
		c, err := collect(ctx, s.packages, s.renames)
		if err != nil {
			return nil, err
		}
		p.host = c
		owners = append(owners, sortedKeys(c.packages)...)
	}
	top, err := treeEntries(s.trees, s.entries)
	if err != nil {
		return nil, err
	}
	p.top = top
	vs, err := versions(ctx, dedupe(owners))
	if err != nil {
		return nil, err
	}
	p.packages = vs
	return p, nil
}

// build makes the image: the layers of p, bottom first, with cfg.
func (p *layerPlan) build(cfg ociimage.AppConfig) (v1.Image, error) {
	var layers []v1.Layer
	add := func(what string, es []ociimage.Entry) error {
		l, err := ociimage.Layer(es...)
		if err != nil {
			return fmt.Errorf("%s layer: %w", what, err)
		}
		layers = append(layers, l)
		return nil
	}
	if p.base != nil {
		if err := add("base", p.base); err != nil {
			return nil, err
		}
	}
	if p.host != nil {
		es, err := p.host.entries()
		if err != nil {
			return nil, fmt.Errorf("reading the package files: %w", err)
		}
		if err := add("packages", es); err != nil {
			return nil, err
		}
	}
	if err := add("top", p.top); err != nil {
		return nil, err
	}
	return ociimage.Image(cfg, layers...)
}

// treeEntries returns the files under files/TREE for each tree, at the
// same paths, then extra, which wins over them; parents first. Scripts
// (*.sh, and what is in a cgi-bin) are executable.
func treeEntries(trees []string, extra []ociimage.Entry) ([]ociimage.Entry, error) {
	byPath := map[string]ociimage.Entry{}
	for _, tree := range trees {
		root := "files/" + tree
		err := fs.WalkDir(files, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == root {
				return err
			}
			rel := strings.TrimPrefix(p, root+"/")
			if d.IsDir() {
				byPath[rel] = ociimage.Dir(rel, 0o755)
				return nil
			}
			b, err := files.ReadFile(p)
			if err != nil {
				return err
			}
			mode := int64(0o644)
			if strings.HasSuffix(rel, ".sh") || path.Base(path.Dir(rel)) == "cgi-bin" {
				mode = 0o755
			}
			byPath[rel] = ociimage.File(rel, b, mode)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading files/%s: %w", tree, err)
		}
	}
	for _, e := range extra {
		rel := strings.TrimSuffix(cleanRel(e.Path), "/")
		byPath[rel] = e
	}
	// Parents of extra entries that no tree has.
	for _, rel := range sortedKeys(byPath) {
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = ociimage.Dir(d, 0o755)
			}
		}
	}
	out := make([]ociimage.Entry, 0, len(byPath))
	for _, rel := range sortedKeys(byPath) {
		out = append(out, byPath[rel])
	}
	return out, nil
}

// osRelease names the userland of the Debian-based replicas.
const osRelease = `PRETTY_NAME="Man8S corpus (Debian packages, busybox userland)"
NAME="Man8S corpus"
ID=man8s-corpus
ID_LIKE=debian
`

// baseEntries is the userland below the Debian-based replicas: the usual
// directories, the host's merged-/usr links (so that every package file
// lies at its host path), and busybox as the shell and the tools a Debian
// base image has (sh, find, sed, id, ps, ...), its applets linked beside it.
func baseEntries(busybox string) ([]ociimage.Entry, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w", err)
	}
	es := []ociimage.Entry{}
	dirs := []struct {
		p    string
		mode int64
	}{
		{"dev", 0o755}, {"etc", 0o755}, {"home", 0o755}, {"media", 0o755}, {"mnt", 0o755},
		{"opt", 0o755}, {"proc", 0o555}, {"root", 0o700}, {"run", 0o755}, {"srv", 0o755},
		{"sys", 0o555}, {"tmp", 0o1777}, {"usr", 0o755}, {"usr/bin", 0o755}, {"usr/lib", 0o755},
		{"usr/local", 0o755}, {"usr/local/bin", 0o755}, {"usr/local/sbin", 0o755},
		{"usr/sbin", 0o755}, {"usr/share", 0o755}, {"var", 0o755}, {"var/cache", 0o755},
		{"var/lib", 0o755}, {"var/log", 0o755}, {"var/tmp", 0o1777},
	}
	for _, d := range dirs {
		es = append(es, ociimage.Dir(d.p, d.mode))
	}
	// /bin → usr/bin and the like, as on the host.
	for _, top := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		fi, err := os.Lstat("/" + top)
		switch {
		case err != nil:
			continue
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink("/" + top)
			if err != nil {
				return nil, err
			}
			es = append(es, ociimage.Symlink(top, target))
			if t := cleanRel(target); strings.HasPrefix(t, "usr/") && t != "usr/bin" && t != "usr/sbin" && t != "usr/lib" {
				es = append(es, ociimage.Dir(t, 0o755))
			}
		case fi.IsDir():
			es = append(es, ociimage.Dir(top, 0o755))
		}
	}
	es = append(es,
		ociimage.Symlink("var/run", "/run"),
		ociimage.Symlink("var/lock", "/run/lock"),
	)
	binDir, err := filepath.EvalSymlinks("/bin")
	if err != nil {
		return nil, err
	}
	bin := cleanRel(binDir)
	es = append(es, ociimage.File(bin+"/busybox", bb, 0o755))
	for _, a := range ociimage.BusyboxApplets() {
		es = append(es, ociimage.Symlink(bin+"/"+a, "busybox"))
	}
	es = append(es,
		ociimage.File("etc/os-release", []byte(osRelease), 0o644),
		ociimage.File("etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"), 0o644),
	)
	es = append(es, users("", "")...)
	sort.SliceStable(es, func(i, j int) bool { return strings.TrimSuffix(es[i].Path, "/") < strings.TrimSuffix(es[j].Path, "/") })
	return es, nil
}

// sourceHash is the hash of the builder's code and files.
var sourceHash = sync.OnceValues(func() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sources.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
})

// cacheKey is the key of a replica: its name, the builder's source, the
// architecture and the packages' versions.
func cacheKey(name string, packages []string) (string, error) {
	src, err := sourceHash()
	if err != nil {
		return "", fmt.Errorf("hashing the corpus builder's source: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "mbctl test corpus\nreplica %s\nsource %s\narch %s\n", name, src, runtime.GOARCH)
	for _, p := range packages {
		fmt.Fprintf(h, "package %s\n", p)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func dedupe(s []string) []string {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return sortedKeys(m)
}
