package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/image/cache"
)

// testImage is what fillCache puts in a cache.
type testImage struct {
	dir                     string
	manifest, config, layer v1.Descriptor
	orphan                  v1.Hash
	imageSize, orphanSize   int64
	tempFile                string
	tempSize                int64
	totalBlobs, totalBytes  int64
}

// fillCache makes a cache in a temp dir holding image example.com/app:1
// (manifest, config, one layer), a blob no image needs and the temp file of
// an interrupted download.
func fillCache(t *testing.T) testImage {
	t.Helper()
	im := testImage{dir: filepath.Join(t.TempDir(), "cache")}
	c, err := cache.Open(im.dir)
	if err != nil {
		t.Fatal(err)
	}
	put := func(data []byte, mt types.MediaType) v1.Descriptor {
		t.Helper()
		h, n, err := v1.SHA256(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteFrom(t.Context(), h, n, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		im.totalBlobs++
		im.totalBytes += n
		return v1.Descriptor{MediaType: mt, Digest: h, Size: n}
	}
	im.layer = put([]byte("layer content"), types.OCILayer)
	im.config = put([]byte(`{"architecture":"amd64","os":"linux"}`), types.OCIConfigJSON)
	m, err := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: im.config, Layers: []v1.Descriptor{im.layer}})
	if err != nil {
		t.Fatal(err)
	}
	im.manifest = put(m, types.OCIManifestSchema1)
	im.imageSize = im.layer.Size + im.config.Size + im.manifest.Size
	if err := c.Tag("example.com/app:1", im.manifest); err != nil {
		t.Fatal(err)
	}
	orphan := put([]byte("no image needs this"), types.OCILayer)
	im.orphan, im.orphanSize = orphan.Digest, orphan.Size
	im.tempFile = filepath.Join(im.dir, "blobs/sha256/.tmp-interrupted")
	writeTestFile(t, im.tempFile, "half a layer")
	im.tempSize = int64(len("half a layer"))
	im.totalBytes += im.tempSize
	return im
}

// cacheConfig is a configuration whose cache is dir.
func cacheConfig(dir string) func() (config.Config, config.Origin, error) {
	return func() (config.Config, config.Origin, error) {
		c := config.Default()
		c.Paths.Cache = dir
		// The machine paths that cache list and prune read, beside it.
		base := filepath.Dir(dir)
		c.Paths.Machines, c.Paths.Configs, c.Paths.Storage = filepath.Join(base, "machines"), filepath.Join(base, "configs"), filepath.Join(base, "storage")
		c.Paths.Images, c.Paths.Scratch = filepath.Join(base, "machines/.images"), filepath.Join(base, "scratch")
		return c, config.Origin{}, nil
	}
}

func cachedRefs(t *testing.T, dir string) []string {
	t.Helper()
	c, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	refs := []string{}
	for _, e := range entries {
		refs = append(refs, e.Ref)
	}
	return refs
}

func TestNewCmdCache(t *testing.T) {
	ignore := cmp.Options{
		cmpopts.IgnoreFields(CacheListOptions{}, "IO", "Config", "Log"),
		cmpopts.IgnoreFields(CachePruneOptions{}, "IO", "Config", "Log"),
		cmpopts.IgnoreFields(CacheClearOptions{}, "IO", "Config", "Log", "Confirm"),
	}
	list := func(f *Factory, got *any) *cobra.Command {
		return NewCmdCacheList(f, func(_ context.Context, o *CacheListOptions) error { *got = o; return nil })
	}
	prune := func(f *Factory, got *any) *cobra.Command {
		return NewCmdCachePrune(f, func(_ context.Context, o *CachePruneOptions) error { *got = o; return nil })
	}
	clearCmd := func(f *Factory, got *any) *cobra.Command {
		return NewCmdCacheClear(f, func(_ context.Context, o *CacheClearOptions) error { *got = o; return nil })
	}
	for _, tt := range []struct {
		name    string
		cmd     func(*Factory, *any) *cobra.Command
		args    []string
		want    any
		wantErr string
	}{
		{"list", list, nil, &CacheListOptions{}, ""},
		{"list --json", list, []string{"--json"}, &CacheListOptions{JSON: true}, ""},
		{"prune", prune, nil, &CachePruneOptions{}, ""},
		{"prune --json", prune, []string{"--json"}, &CachePruneOptions{JSON: true}, ""},
		{"clear", clearCmd, nil, &CacheClearOptions{}, ""},
		{"clear --yes --json", clearCmd, []string{"--yes", "--json"}, &CacheClearOptions{Yes: true, JSON: true}, ""},
		{"clear -y", clearCmd, []string{"-y"}, &CacheClearOptions{Yes: true}, ""},
		{"clear argument", clearCmd, []string{"all"}, nil, "takes no arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got any
			cmd := tt.cmd(testFactory(t), &got)
			cmd.SetArgs(append([]string{}, tt.args...))
			cmd.SetOut(new(strings.Builder))
			cmd.SetErr(new(strings.Builder))
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != nil {
					t.Fatalf("err = %v, options %+v; want an error %q before running", err, got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, ignore); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCacheListRun(t *testing.T) {
	im := fillCache(t)
	run := func(o CacheListOptions) (string, string) {
		t.Helper()
		ios, _, out, errOut := iostreams.Test()
		o.IO, o.Log = ios, slog.New(slog.DiscardHandler)
		if err := cacheListRun(t.Context(), &o); err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String()
	}

	out, _ := run(CacheListOptions{Config: cacheConfig(im.dir)})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "REFERENCE ") || !strings.Contains(lines[0], "LAST USED") ||
		!strings.HasPrefix(lines[1], "example.com/app:1  ") || !strings.Contains(lines[1], shortDigest(im.manifest.Digest.String())+"  "+humanBytes(im.imageSize)) {
		t.Errorf("table:\n%s", out)
	}

	out, _ = run(CacheListOptions{Config: cacheConfig(im.dir), JSON: true})
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(got) != 1 || got[0]["ref"] != "example.com/app:1" || got[0]["digest"] != im.manifest.Digest.String() ||
		got[0]["media_type"] != string(types.OCIManifestSchema1) || got[0]["size"] != float64(im.imageSize) ||
		got[0]["pulled"] == nil || got[0]["last_used"] == nil {
		t.Errorf("JSON: %v", got)
	}

	empty := filepath.Join(t.TempDir(), "cache")
	out, errOut := run(CacheListOptions{Config: cacheConfig(empty)})
	if out != "" || errOut != "the cache "+empty+" holds no images\n" {
		t.Errorf("empty cache: stdout %q, stderr %q", out, errOut)
	}
	if out, _ := run(CacheListOptions{Config: cacheConfig(empty), JSON: true}); out != "[]\n" {
		t.Errorf("empty cache as JSON: %q", out)
	}
}

// An image another tool put into index.json, without name or times: the
// table says "-", not a blank cell or the year 1; JSON leaves the times
// out.
func TestCacheListUnknownTimes(t *testing.T) {
	im := fillCache(t)
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{im.manifest}})
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(im.dir, "index.json"), string(idx))
	ios, _, out, _ := iostreams.Test()
	o := CacheListOptions{IO: ios, Config: cacheConfig(im.dir), Log: slog.New(slog.DiscardHandler)}
	if err := cacheListRun(t.Context(), &o); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "0001-01-01") || !strings.HasPrefix(strings.Split(out.String(), "\n")[1], "-  ") || !strings.HasSuffix(out.String(), "  -\n") {
		t.Errorf("table:\n%s", out)
	}
	out.Reset()
	o.JSON = true
	if err := cacheListRun(t.Context(), &o); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "pulled") || strings.Contains(out.String(), "last_used") {
		t.Errorf("JSON has zero times:\n%s", out)
	}
}

func TestCachePruneRun(t *testing.T) {
	im := fillCache(t)
	ios, _, out, errOut := iostreams.Test()
	o := CachePruneOptions{IO: ios, Config: cacheConfig(im.dir), Log: slog.New(slog.DiscardHandler)}
	if err := cachePruneRun(t.Context(), &o); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("deleted 1 blobs and 1 temp files, %s freed\n", humanBytes(im.orphanSize+im.tempSize)); out.String() != want || errOut.Len() != 0 {
		t.Errorf("stdout %q, stderr %q; want %q", out, errOut, want)
	}
	if refs := cachedRefs(t, im.dir); len(refs) != 1 {
		t.Errorf("prune dropped the image: %v", refs)
	}

	// The layer goes missing: prune says so, in JSON too.
	if err := os.Remove(filepath.Join(im.dir, "blobs/sha256", im.layer.Digest.Hex)); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	o.JSON = true
	if err := cachePruneRun(t.Context(), &o); err != nil {
		t.Fatal(err)
	}
	want := `{
  "cache": "` + im.dir + `",
  "blobs": 0,
  "temp_files": 0,
  "bytes": 0,
  "missing": [
    "` + im.layer.Digest.String() + `"
  ],
  "image_roots": [],
  "image_root_bytes": 0
}
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	if !strings.Contains(errOut.String(), "warning: blob "+im.layer.Digest.String()+" of a cached image is missing") {
		t.Errorf("no warning about the missing layer: %q", errOut)
	}
}

func TestCacheClearRun(t *testing.T) {
	for _, tt := range []struct {
		name      string
		tty, yes  bool
		json      bool
		answer    string
		wantErr   string
		wantAsked bool
	}{
		{name: "no terminal", wantErr: "no terminal to confirm on; pass --yes"},
		{name: "answer no", tty: true, answer: "n\n", wantErr: "the answer was no", wantAsked: true},
		{name: "input ends", tty: true, answer: "", wantErr: "standard input ended", wantAsked: true},
		{name: "answer yes", tty: true, answer: "y\n", wantAsked: true},
		{name: "--yes on a terminal", tty: true, yes: true},
		{name: "--yes --json", yes: true, json: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			im := fillCache(t)
			ios, in, out, errOut := iostreams.Test()
			ios.SetStdinTTY(tt.tty)
			in.WriteString(tt.answer)
			p := &prompter{in: bufio.NewReader(in), out: errOut}
			o := CacheClearOptions{IO: ios, Config: cacheConfig(im.dir), Log: slog.New(slog.DiscardHandler), Confirm: p.confirm, Yes: tt.yes, JSON: tt.json}
			err := cacheClearRun(t.Context(), &o)
			asked := strings.Contains(errOut.String(), "Delete the whole cache? [y/N]")
			if asked != tt.wantAsked {
				t.Errorf("asked = %v, want %v; stderr %q", asked, tt.wantAsked, errOut)
			}
			if tt.wantAsked && !strings.Contains(errOut.String(), "Clearing the cache "+im.dir+" deletes 1 image:\n  example.com/app:1  ") {
				t.Errorf("no summary before the question: %q", errOut)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "not clearing the cache "+im.dir) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if refs := cachedRefs(t, im.dir); len(refs) != 1 || out.Len() != 0 {
					t.Errorf("refused clear changed the cache (%v) or printed %q", refs, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if refs := cachedRefs(t, im.dir); len(refs) != 0 {
				t.Errorf("cache still holds %v", refs)
			}
			if _, err := os.Stat(im.tempFile); !os.IsNotExist(err) {
				t.Errorf("temp file left: %v", err)
			}
			want := fmt.Sprintf("deleted %d blobs and 1 temp files, %s freed\n", im.totalBlobs, humanBytes(im.totalBytes))
			if tt.json {
				want = fmt.Sprintf("{\n  \"cache\": %q,\n  \"blobs\": %d,\n  \"temp_files\": 1,\n  \"bytes\": %d\n}\n", im.dir, im.totalBlobs, im.totalBytes)
			}
			if diff := cmp.Diff(want, out.String()); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
		})
	}
}

// A script's `mbctl cache clear` fails at once, naming --yes.
func TestCacheClearNeedsYesWithoutTerminal(t *testing.T) {
	im := fillCache(t)
	env := noConfig(t, fmt.Sprintf("[paths]\ncache = %q\n", im.dir))
	code, out, stderr := runCLI(t, env, "cache", "clear")
	if code != exitError || out != "" || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("cache clear: status %d, stdout %q, stderr %q", code, out, stderr)
	}
	code, out, stderr = runCLI(t, env, "cache", "clear", "--yes")
	if code != 0 || out != fmt.Sprintf("deleted %d blobs and 1 temp files, %s freed\n", im.totalBlobs, humanBytes(im.totalBytes)) {
		t.Errorf("cache clear --yes: status %d, stdout %q, stderr %q", code, out, stderr)
	}
}

// TestCacheImageRoots lists image roots with the machines that use them,
// and prunes only the unused one.
func TestCacheImageRoots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	loadConfig := cacheConfig(dir)
	cfg, _, _ := loadConfig()
	used, unused := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	for _, d := range []string{used, unused} {
		root := filepath.Join(cfg.Paths.Images, strings.Replace(d, ":", "-", 1))
		if err := os.MkdirAll(filepath.Join(root, "usr"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "usr/f"), []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
		rec := fmt.Sprintf(`{"ref": "example/app:%s", "size": 5}`, d[7:8])
		if err := os.WriteFile(root+".json", []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(cfg.Paths.Configs, "web")
	if err := os.MkdirAll(conf, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "man8env.env"), []byte("MAN8S_OCI_IMAGE_DIGEST="+used+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ios, _, out, _ := iostreams.Test()
	lo := CacheListOptions{IO: ios, Config: loadConfig, Log: slog.New(slog.DiscardHandler)}
	if err := cacheListRun(t.Context(), &lo); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"example/app:a", "5 B, used by web", "example/app:b", "5 B, unused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cache list lacks %q:\n%s", want, out)
		}
	}
	ios, _, out, _ = iostreams.Test()
	po := CachePruneOptions{IO: ios, Config: loadConfig, Log: slog.New(slog.DiscardHandler), JSON: true}
	if err := cachePruneRun(t.Context(), &po); err != nil {
		t.Fatal(err)
	}
	var rep cachePruneReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	gone := filepath.Join(cfg.Paths.Images, strings.Replace(unused, ":", "-", 1))
	if len(rep.ImageRoots) != 1 || rep.ImageRoots[0] != gone || rep.ImageRootBytes != 5 {
		t.Errorf("pruned roots %v (%d bytes), want [%s] (5)", rep.ImageRoots, rep.ImageRootBytes, gone)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("unused root still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Paths.Images, strings.Replace(used, ":", "-", 1))); err != nil {
		t.Errorf("the used root went: %v", err)
	}
}
