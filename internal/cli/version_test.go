package cli

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/image/gunzip"
)

func TestNewCmdVersion(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want VersionOptions
	}{
		{"version", nil, VersionOptions{}},
		{"version --json", []string{"--json"}, VersionOptions{JSON: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got *VersionOptions
			cmd := NewCmdVersion(testFactory(t), func(_ context.Context, o *VersionOptions) error { got = o; return nil })
			cmd.SetArgs(append([]string{}, tt.args...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got, cmpopts.IgnoreFields(VersionOptions{}, "IO", "Build", "Gzip")); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if got.Build != buildinfo.Get() || got.Gzip != gunzip.Engine {
				t.Errorf("build %+v gzip %q; want the running binary's", got.Build, got.Gzip)
			}
		})
	}
}

func TestVersionRun(t *testing.T) {
	build := buildinfo.Info{Version: "v1.2.3", Commit: "0c6b8ab", GoVersion: "go1.26.0"}
	for _, tt := range []struct {
		name string
		json bool
		want string
	}{
		{"text", false, "mbctl v1.2.3 (commit 0c6b8ab, go1.26.0, gzip: isa-l)\n"},
		{"json", true, `{
  "version": "v1.2.3",
  "commit": "0c6b8ab",
  "go_version": "go1.26.0",
  "gzip": "isa-l"
}
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, errOut := iostreams.Test()
			if err := versionRun(t.Context(), &VersionOptions{IO: ios, Build: build, Gzip: "isa-l", JSON: tt.json}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, out.String()); diff != "" || errOut.Len() != 0 {
				t.Errorf("stdout (-want +got):\n%s\nstderr %q", diff, errOut)
			}
		})
	}
}

// `mbctl --version` and `mbctl version` print the same line.
func TestVersionFlagMatchesCommand(t *testing.T) {
	_, flag, _ := runCLI(t, nil, "--version")
	_, cmd, _ := runCLI(t, nil, "version")
	if flag != cmd || flag != versionString()+"\n" {
		t.Errorf("--version %q, version %q", flag, cmd)
	}
}
