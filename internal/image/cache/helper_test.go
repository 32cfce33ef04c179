package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Environment of the helper process (see TestHelperProcess).
const (
	envHelper = "MBCTL_CACHE_TEST_HELPER" // what the helper does
	envDir    = "MBCTL_CACHE_TEST_DIR"    // the cache directory
	envArg    = "MBCTL_CACHE_TEST_ARG"    // a mode-specific argument
)

// helper starts this test binary as a child process running
// TestHelperProcess in the given mode.
func helper(t *testing.T, mode, dir, arg string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), envHelper+"="+mode, envDir+"="+dir, envArg+"="+arg)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestHelperProcess is not a test: it is the child process of the
// multi-process tests and does nothing unless envHelper is set.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(envHelper)
	if mode == "" {
		return // an ordinary test run: nothing to do
	}
	if err := runHelper(mode, os.Getenv(envDir), os.Getenv(envArg)); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHelper(mode, dir, arg string) error {
	c, err := Open(dir)
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch mode {
	case "write":
		// arg: a file holding the blob content; write it 20 times.
		data, err := os.ReadFile(arg)
		if err != nil {
			return err
		}
		d := digestOf(data)
		for range 20 {
			if err := c.WriteFrom(ctx, d, int64(len(data)), bytes.NewReader(data)); err != nil {
				return err
			}
		}
		return nil
	case "tag":
		// arg: "PREFIX DIGEST SIZE"; tag 40 refs PREFIX-i plus a shared one.
		f := strings.Fields(arg)
		h, err := v1.NewHash(f[1])
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return err
		}
		desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: size}
		for i := range 40 {
			if err := c.Tag(fmt.Sprintf("example.com/%s:%d", f[0], i), desc); err != nil {
				return err
			}
			if err := c.Tag("example.com/shared:latest", desc); err != nil {
				return err
			}
		}
		return nil
	case "lock":
		// Hold the exclusive lock, say so, and wait to be killed.
		if _, err := c.Acquire(ctx, false); err != nil {
			return err
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func newCache(t *testing.T) *Cache {
	t.Helper()
	c, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// putBlob writes data into the cache as a blob of media type mt.
func putBlob(t *testing.T, c *Cache, mt types.MediaType, data []byte) v1.Descriptor {
	t.Helper()
	d := v1.Descriptor{MediaType: mt, Digest: digestOf(data), Size: int64(len(data))}
	if err := c.WriteFrom(context.Background(), d.Digest, d.Size, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

// descOf returns the descriptor of data without writing it.
func descOf(mt types.MediaType, data []byte) v1.Descriptor {
	return v1.Descriptor{MediaType: mt, Digest: digestOf(data), Size: int64(len(data))}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// putImage writes a config, the given layers and a manifest, and returns
// the manifest's descriptor and the total size of the three kinds.
func putImage(t *testing.T, c *Cache, config string, layers ...[]byte) (v1.Descriptor, int64) {
	t.Helper()
	cfg := putBlob(t, c, types.OCIConfigJSON, []byte(config))
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfg}
	total := cfg.Size
	for _, l := range layers {
		d := putBlob(t, c, types.OCILayer, l)
		m.Layers = append(m.Layers, d)
		total += d.Size
	}
	md := putBlob(t, c, types.OCIManifestSchema1, mustJSON(t, m))
	return md, total + md.Size
}

// tempFiles lists the temporary files in the cache.
func tempFiles(t *testing.T, c *Cache) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(c.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) || strings.HasPrefix(d.Name(), "."+indexFile+".tmp") {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// lookup returns the index entry of ref, failing t if there is none.
func lookup(t *testing.T, c *Cache, ref string) v1.Descriptor {
	t.Helper()
	idx, err := c.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if refOf(m) == ref {
			return m
		}
	}
	t.Fatalf("%s is not in the index", ref)
	return v1.Descriptor{}
}

// untag removes ref from the index.
func untag(t *testing.T, c *Cache, ref string) {
	t.Helper()
	err := c.updateIndex(func(idx *v1.IndexManifest) (bool, error) {
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(m v1.Descriptor) bool { return refOf(m) == ref })
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
