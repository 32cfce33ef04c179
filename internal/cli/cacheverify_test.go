package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/image/cache"
)

func TestNewCmdCacheVerify(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want CacheVerifyOptions
	}{
		{nil, CacheVerifyOptions{}},
		{[]string{"--repair", "--json"}, CacheVerifyOptions{Repair: true, JSON: true}},
	} {
		var got *CacheVerifyOptions
		cmd := NewCmdCacheVerify(testFactory(t), func(_ context.Context, o *CacheVerifyOptions) error { got = o; return nil })
		cmd.SetArgs(tt.args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&tt.want, got, cmpopts.IgnoreFields(CacheVerifyOptions{}, "IO", "Config", "Log")); diff != "" {
			t.Errorf("%v: options (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestCacheVerifyRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("a blob that will be damaged")
	d, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFrom(t.Context(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	bad := append(bytes.Clone(data[:len(data)-1]), 'X')
	if err := os.WriteFile(c.Path(d), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(o CacheVerifyOptions) (string, error) {
		ios, _, out, _ := iostreams.Test()
		o.IO, o.Config, o.Log = ios, cacheConfig(dir), slog.New(slog.DiscardHandler)
		err := cacheVerifyRun(t.Context(), &o)
		return out.String(), err
	}
	out, err := run(CacheVerifyOptions{})
	var es *exitStatusError
	if !errors.As(err, &es) || !strings.Contains(out, "bad blob "+d.String()) || !strings.Contains(out, "--repair") {
		t.Fatalf("verify of a damaged cache: %v\n%s", err, out)
	}
	out, err = run(CacheVerifyOptions{Repair: true, JSON: true})
	if err != nil {
		t.Fatalf("verify --repair: %v\n%s", err, out)
	}
	var rep cache.VerifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Bad) != 1 || !rep.Bad[0].Removed {
		t.Fatalf("verify --repair --json = %+v, %v\n%s", rep, err, out)
	}
	if out, err = run(CacheVerifyOptions{}); err != nil || !strings.Contains(out, "the cache is sound") {
		t.Errorf("verify after the repair: %v\n%s", err, out)
	}
}
