package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
)

func TestNewCmdHostClean(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want HostCleanOptions
	}{
		{nil, HostCleanOptions{}},
		{[]string{"--dry-run", "--json"}, HostCleanOptions{DryRun: true, JSON: true}},
	} {
		var got *HostCleanOptions
		cmd := NewCmdHostClean(testFactory(t), func(_ context.Context, o *HostCleanOptions) error { got = o; return nil })
		cmd.SetArgs(tt.args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&tt.want, got, cmpopts.IgnoreFields(HostCleanOptions{}, "IO", "Config", "Log")); diff != "" {
			t.Errorf("%v: options (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestHostCleanRun(t *testing.T) {
	root := t.TempDir()
	cfg := config.Default()
	for _, p := range []*string{&cfg.Paths.Machines, &cfg.Paths.Configs, &cfg.Paths.Storage, &cfg.Paths.Scratch} {
		*p = filepath.Join(root, filepath.Base(*p))
	}
	orphan := filepath.Join(cfg.Paths.Machines, ".web.mbctl-staging-123")
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	load := func() (config.Config, config.Origin, error) { return cfg, config.Origin{}, nil }
	run := func(o HostCleanOptions) string {
		t.Helper()
		ios, _, out, _ := iostreams.Test()
		o.IO, o.Config, o.Log = ios, load, slog.New(slog.DiscardHandler)
		if err := hostCleanRun(t.Context(), &o); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	var rep hostCleanReport
	if err := json.Unmarshal([]byte(run(HostCleanOptions{DryRun: true, JSON: true})), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || len(rep.Orphans) != 1 || rep.Orphans[0] != orphan || rep.Dead == nil {
		t.Errorf("--dry-run --json = %+v", rep)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Fatal("the dry run removed the orphan")
	}
	if out := run(HostCleanOptions{}); !strings.Contains(out, "took back the orphan staging dir "+orphan) {
		t.Errorf("host clean said:\n%s", out)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Error("the orphan is still there")
	}
	if out := run(HostCleanOptions{}); !strings.Contains(out, "nothing to clean") {
		t.Errorf("second host clean said:\n%s", out)
	}
}
