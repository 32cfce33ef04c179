package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"golang.org/x/sync/errgroup"
)

// fixtureVersion changes whenever the recipe below changes; a fixture of
// another version is rebuilt.
const fixtureVersion = 3

// fixtureSuite is the Debian release of layer 1.
const fixtureSuite = "bookworm"

// fixtureJSON is the description of the fixture in the fixtures dir.
const fixtureJSON = "fixture.json"

// defaultMirror is used when no Debian mirror is found in apt's sources.
const defaultMirror = "http://deb.debian.org/debian"

// fixtureTime is the mtime of the entries layer 3 makes up.
var fixtureTime = time.Unix(ociimage.DefaultModTimeUnix, 0).UTC()

// Fixture describes the benchmark image: three gzip layer blobs in the
// fixtures dir.
type Fixture struct {
	Version      int         `json:"version"`
	Built        time.Time   `json:"built"`
	BuildSeconds float64     `json:"build_seconds"`
	Mirror       string      `json:"mirror"`
	Suite        string      `json:"suite"`
	GoTree       string      `json:"go_tree"`
	GoVersion    string      `json:"go_version"`
	Layers       []LayerInfo `json:"layers"`
	// UnpackedEntries and UnpackedBytes describe the image's root
	// filesystem after all layers are applied (whiteouts included): every
	// path, and the file content (a hardlinked file once).
	UnpackedEntries int   `json:"unpacked_entries"`
	UnpackedBytes   int64 `json:"unpacked_bytes"`
}

// LayerInfo describes one layer blob.
type LayerInfo struct {
	What    string `json:"what"`
	File    string `json:"file"`
	Digest  string `json:"digest"`
	DiffID  string `json:"diff_id"`
	Size    int64  `json:"size"`     // compressed bytes
	TarSize int64  `json:"tar_size"` // uncompressed tar bytes
	Entries int    `json:"entries"`  // tar entries
}

// CompressedSize is the sum of the layer blob sizes.
func (f *Fixture) CompressedSize() int64 {
	var n int64
	for _, l := range f.Layers {
		n += l.Size
	}
	return n
}

// TarSize is the sum of the uncompressed layer sizes.
func (f *Fixture) TarSize() int64 {
	var n int64
	for _, l := range f.Layers {
		n += l.TarSize
	}
	return n
}

// TarEntries is the number of tar entries of all layers.
func (f *Fixture) TarEntries() int {
	n := 0
	for _, l := range f.Layers {
		n += l.Entries
	}
	return n
}

// BlobPath returns the path of layer i's blob.
func (f *Fixture) BlobPath(dir string, i int) string {
	return filepath.Join(dir, f.Layers[i].File)
}

// fixtureOptions says how to build a missing fixture.
type fixtureOptions struct {
	dir     string // the fixtures dir
	mirror  string // Debian mirror; "" means apt's
	goTree  string // the many-file tree of layer 2
	rebuild bool   // build even when a valid fixture is present
	logf    func(format string, args ...any)
}

// loadFixture returns the fixture in dir, or an error saying why it cannot
// be used.
func loadFixture(dir string) (*Fixture, error) {
	b, err := os.ReadFile(filepath.Join(dir, fixtureJSON))
	if err != nil {
		return nil, err
	}
	var f Fixture
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", fixtureJSON, err)
	}
	if f.Version != fixtureVersion {
		return nil, fmt.Errorf("fixture version %d, want %d", f.Version, fixtureVersion)
	}
	if len(f.Layers) != 3 {
		return nil, fmt.Errorf("fixture has %d layers, want 3", len(f.Layers))
	}
	for i, l := range f.Layers {
		fi, err := os.Stat(f.BlobPath(dir, i))
		if err != nil {
			return nil, err
		}
		if fi.Size() != l.Size {
			return nil, fmt.Errorf("layer blob %s: %d bytes, want %d", l.File, fi.Size(), l.Size)
		}
	}
	return &f, nil
}

// ensureFixture loads the fixture or, when it is missing or unusable,
// builds it. built reports whether it was built now.
func ensureFixture(ctx context.Context, o fixtureOptions) (f *Fixture, built bool, err error) {
	if !o.rebuild {
		f, err := loadFixture(o.dir)
		if err == nil {
			return f, false, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			o.logf("fixture in %s unusable (%v): rebuilding", o.dir, err)
		}
	}
	f, err = buildFixture(ctx, o)
	return f, err == nil, err
}

// buildFixture builds the three layers in a build dir inside o.dir and
// moves them into place; fixture.json is written last.
func buildFixture(ctx context.Context, o fixtureOptions) (_ *Fixture, retErr error) {
	start := time.Now()
	for _, tool := range []string{"debootstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("building the fixture needs %s (apt-get install debootstrap): %w", tool, err)
		}
	}
	if _, err := os.Stat(filepath.Join(o.goTree, "VERSION")); err != nil {
		return nil, fmt.Errorf("layer 2 tree %s: not a Go toolchain: %w", o.goTree, err)
	}
	mirror := o.mirror
	if mirror == "" {
		mirror = aptMirror("/etc/apt", fixtureSuite)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating fixtures dir: %w", err)
	}
	build, err := os.MkdirTemp(o.dir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("creating build dir: %w", err)
	}
	defer func() { retErr = errors.Join(retErr, removeTree(build)) }()

	rootfs := filepath.Join(build, "rootfs")
	goTree := filepath.Join(build, "go")
	o.logf("fixture: debootstrap --variant=minbase %s %s (from %s)", fixtureSuite, rootfs, mirror)
	o.logf("fixture: meanwhile copying %s and installing its standard library into pkg/ (go install std)", o.goTree)
	prep, pctx := errgroup.WithContext(ctx)
	prep.Go(func() error {
		logPath := filepath.Join(build, "debootstrap.log")
		if _, err := runLogged(pctx, logPath, "debootstrap", "--variant=minbase", fixtureSuite, rootfs, mirror); err != nil {
			return fmt.Errorf("debootstrap: %w%s", err, tailFile(logPath, 15))
		}
		return nil
	})
	prep.Go(func() error {
		return installGoStd(pctx, o.goTree, goTree, filepath.Join(build, "go-install.log"))
	})
	if err := prep.Wait(); err != nil {
		return nil, err
	}
	o.logf("fixture: trees ready after %s; writing layers", since(start))

	f := &Fixture{
		Version: fixtureVersion, Mirror: mirror, Suite: fixtureSuite, GoTree: o.goTree,
		GoVersion: firstLine(filepath.Join(o.goTree, "VERSION")),
	}
	f.Layers = make([]LayerInfo, 3)
	trees := []*treeStats{newTreeStats(), newTreeStats()}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		li, err := writeLayer(gctx, filepath.Join(build, "layer1.tar.gz"), trees[0], func(lw *layerWriter) error {
			return lw.addTree(rootfs, "", skipRootfs)
		})
		li.What = "Debian " + fixtureSuite + " minbase (debootstrap)"
		f.Layers[0] = li
		return err
	})
	g.Go(func() error {
		li, err := writeLayer(gctx, filepath.Join(build, "layer2.tar.gz"), trees[1], func(lw *layerWriter) error {
			for _, d := range []string{"usr", "usr/local"} {
				if err := lw.addPath(filepath.Join(rootfs, d), d); err != nil {
					return err
				}
			}
			return lw.addTree(goTree, "usr/local/go", nil)
		})
		li.What = f.GoVersion + " toolchain with compiled std at /usr/local/go"
		f.Layers[1] = li
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	tree := trees[0]
	for p, n := range trees[1].nodes { // layer 2 has no whiteouts
		tree.nodes[p] = n
	}
	li, err := writeLayer(ctx, filepath.Join(build, "layer3.tar.gz"), tree, func(lw *layerWriter) error {
		return writeLayer3(lw, tree, f.GoVersion)
	})
	if err != nil {
		return nil, err
	}
	li.What = "deletes docs, Go tests and some files; adds a few files"
	f.Layers[2] = li
	f.UnpackedEntries, f.UnpackedBytes = tree.totals()

	for _, l := range f.Layers {
		if err := os.Rename(filepath.Join(build, l.File), filepath.Join(o.dir, l.File)); err != nil {
			return nil, fmt.Errorf("moving layer blob into place: %w", err)
		}
	}
	f.Built = time.Now().UTC().Truncate(time.Second)
	f.BuildSeconds = time.Since(start).Seconds()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(build, fixtureJSON)
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(o.dir, fixtureJSON)); err != nil {
		return nil, err
	}
	return f, nil
}

// installGoStd copies the Go toolchain at src to dst and installs the
// compiled standard library into dst/pkg/GOOS_GOARCH, as Go distributions
// up to 1.19 shipped it: a realistic toolchain image with many source files
// and some big binary files.
func installGoStd(ctx context.Context, src, dst, logPath string) error {
	if _, err := runLogged(ctx, logPath, "cp", "-a", src, dst); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	cmd := command(ctx, cmdSpec{
		argv: []string{filepath.Join(dst, "bin", "go"), "install", "std"},
		env: []string{
			"GOROOT=" + dst, "GODEBUG=installgoroot=all", "GOTOOLCHAIN=local",
			"CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GO111MODULE=",
		},
	})
	cmd.Dir = dst
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install std into %s: %w: %s", dst, err, lastLine(string(out)))
	}
	return nil
}

// writeLayer creates a layer blob at p with what fill writes.
func writeLayer(ctx context.Context, p string, tree *treeStats, fill func(*layerWriter) error) (LayerInfo, error) {
	lw, err := newLayerWriter(p, tree)
	if err != nil {
		return LayerInfo{}, err
	}
	if err := fill(lw); err != nil {
		lw.abort()
		return LayerInfo{}, fmt.Errorf("writing %s: %w", filepath.Base(p), err)
	}
	if err := ctx.Err(); err != nil {
		lw.abort()
		return LayerInfo{}, err
	}
	return lw.finish()
}

// skipRootfs leaves out of layer 1 what a Debian base image does not ship:
// the content of the API filesystems' mount points and apt's package cache
// and lists (the directories themselves stay).
func skipRootfs(name string, d fs.DirEntry) bool {
	dir := path.Dir(name)
	switch dir {
	case "dev", "proc", "sys", "run", "tmp":
		return true
	}
	if d.IsDir() {
		return false
	}
	return strings.HasPrefix(name, "var/cache/apt/") || strings.HasPrefix(name, "var/lib/apt/lists/") ||
		name == "var/log/bootstrap.log"
}

// writeLayer3 writes the layer that deletes part of layers 1 and 2 and adds
// a few files: whiteouts of whole trees (docs, Go's tests, api and vendored
// sources) and of single files (some big Go tools), an opaque directory, a
// replaced file, new files, symlinks and a hardlink. A whiteout is written
// only for a path the lower layers have.
func writeLayer3(lw *layerWriter, lower *treeStats, goVersion string) error {
	toolDir := runtime.GOOS + "_" + runtime.GOARCH
	wh := func(p string) error {
		if !lower.exists("/" + p) {
			return nil
		}
		return lw.whiteout(p)
	}
	steps := []func() error{
		func() error { return lw.dir("etc", 0o755) },
		func() error { return wh("etc/motd") },
		func() error {
			return lw.file("etc/mbctl-bench-release", 0o644, "mbctl pull benchmark image, layer 3\n")
		},
		func() error { return lw.dir("usr", 0o755) },
		func() error { return lw.dir("usr/local", 0o755) },
		func() error { return lw.dir("usr/local/bin", 0o755) },
		func() error { return lw.symlink("usr/local/bin/go", "../go/bin/go") },
		func() error { return lw.symlink("usr/local/bin/gofmt", "../go/bin/gofmt") },
		func() error {
			return lw.file("usr/local/bin/hello", 0o755, "#!/bin/sh\necho hello from the mbctl benchmark image\n")
		},
		func() error { return lw.hardlink("usr/local/bin/hello-again", "usr/local/bin/hello") },
		func() error { return lw.dir("usr/local/go", 0o755) },
		func() error { return wh("usr/local/go/CONTRIBUTING.md") },
		func() error { return wh("usr/local/go/SECURITY.md") },
		func() error { return wh("usr/local/go/codereview.cfg") },
		func() error { return wh("usr/local/go/test") },
		func() error { return wh("usr/local/go/api") },
		func() error { return lw.dir("usr/local/go/pkg", 0o755) },
		func() error { return lw.dir("usr/local/go/pkg/tool", 0o755) },
		func() error { return lw.dir("usr/local/go/pkg/tool/"+toolDir, 0o755) },
		func() error { return wh("usr/local/go/pkg/tool/" + toolDir + "/cover") },
		func() error { return wh("usr/local/go/pkg/tool/" + toolDir + "/fix") },
		func() error { return wh("usr/local/go/pkg/tool/" + toolDir + "/preprofile") },
		func() error { return lw.dir("usr/local/go/src", 0o755) },
		func() error { return lw.dir("usr/local/go/src/cmd", 0o755) },
		func() error { return wh("usr/local/go/src/cmd/vendor") },
		func() error {
			return lw.file("usr/local/go/VERSION", 0o644, goVersion+"\nmbctl-bench: replaced in layer 3\n")
		},
		func() error { return lw.dir("usr/local/go/misc", 0o755) },
		func() error { return lw.opaque("usr/local/go/misc") },
		func() error {
			return lw.file("usr/local/go/misc/README", 0o644, "misc/ was made opaque by layer 3\n")
		},
		func() error { return lw.dir("usr/share", 0o755) },
		func() error { return wh("usr/share/doc") },
		func() error { return wh("usr/share/info") },
		func() error { return wh("usr/share/lintian") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// aptMirror returns the first Debian archive URI that apt's sources under
// etcApt use for suite (one-line .list files and deb822 .sources files),
// or defaultMirror.
func aptMirror(etcApt, suite string) string {
	files := []string{filepath.Join(etcApt, "sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", pat))
		files = append(files, m...)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(p, ".sources") {
			uri = mirrorFromDeb822(string(b), suite)
		} else {
			uri = mirrorFromList(string(b), suite)
		}
		if uri != "" {
			return strings.TrimSuffix(uri, "/")
		}
	}
	return defaultMirror
}

// mirrorFromList finds "deb [options] URI SUITE ..." in a sources.list.
func mirrorFromList(s, suite string) string {
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		fields = fields[1:]
		if strings.HasPrefix(fields[0], "[") {
			for len(fields) > 0 && !strings.HasSuffix(fields[0], "]") {
				fields = fields[1:]
			}
			if len(fields) > 0 {
				fields = fields[1:]
			}
		}
		if len(fields) >= 2 && fields[1] == suite {
			return fields[0]
		}
	}
	return ""
}

// mirrorFromDeb822 finds a stanza with Types: deb and suite among its
// Suites in a .sources file, and returns its first URI.
func mirrorFromDeb822(s, suite string) string {
	for _, stanza := range strings.Split(s, "\n\n") {
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		if !contains(strings.Fields(fields["types"]), "deb") || !contains(strings.Fields(fields["suites"]), suite) {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// firstLine returns the first line of the file at p, or "".
func firstLine(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

// tailFile returns the last n lines of the file at p, indented, for an
// error message.
func tailFile(p string, n int) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n    " + strings.Join(lines, "\n    ")
}

// since formats the time since start.
func since(start time.Time) string {
	return time.Since(start).Round(100 * time.Millisecond).String()
}
