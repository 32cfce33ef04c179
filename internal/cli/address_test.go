package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
)

// testFactory is a Factory on fake streams that reads no configuration.
func testFactory(t *testing.T) *Factory {
	t.Helper()
	ios, _, _, _ := iostreams.Test()
	return &Factory{IO: ios, Getenv: func(string) string { return "" }, Prober: noMachinesRun(t)}
}

func TestNewCmdAddress(t *testing.T) {
	for _, tt := range []struct {
		name string
		cmd  func(*Factory, func(context.Context, *AddressOptions) error) *cobra.Command
		args []string
		want AddressOptions
	}{
		{"get", NewCmdAddressGet, []string{"web"}, AddressOptions{Name: "web"}},
		{"get --json", NewCmdAddressGet, []string{"--json", "web"}, AddressOptions{Name: "web", JSON: true}},
		{"getsuffix --json", NewCmdAddressGetSuffix, []string{"db", "--json"}, AddressOptions{Name: "db", JSON: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got *AddressOptions
			cmd := tt.cmd(testFactory(t), func(_ context.Context, o *AddressOptions) error { got = o; return nil })
			cmd.SetArgs(tt.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got, cmpopts.IgnoreFields(AddressOptions{}, "IO", "Config", "Log")); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddressRun(t *testing.T) {
	withPrefix := func() (config.Config, config.Origin, error) {
		c := config.Default()
		c.Network.YggAdmin = "unix:///nonexistent/ygg.sock"
		c.Network.YggPrefix = "300:2e98:a4b0:1789::/64"
		return c, config.Origin{}, nil
	}
	for _, tt := range []struct {
		name    string
		run     func(context.Context, *AddressOptions) error
		opts    AddressOptions
		wantOut string
		wantErr string
	}{
		{"get", addressGetRun, AddressOptions{Name: "TestBWContainer3"}, "300:2e98:a4b0:1789:1d44:bc13:a177:c4d\n", ""},
		{"getsuffix", addressGetSuffixRun, AddressOptions{Name: "TestBWContainer3"}, "::1d44:bc13:a177:c4d\n", ""},
		{"get json", addressGetRun, AddressOptions{Name: "TestBWContainer3", JSON: true}, `{
  "name": "TestBWContainer3",
  "suffix": "::1d44:bc13:a177:c4d",
  "address": "300:2e98:a4b0:1789:1d44:bc13:a177:c4d",
  "subnet": "300:2e98:a4b0:1789::/64",
  "subnet_source": "config"
}
`, ""},
		{"invalid name", addressGetRun, AddressOptions{Name: "a b"}, "", `invalid machine name "a b"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := iostreams.Test()
			o := tt.opts
			o.IO, o.Config, o.Log = ios, withPrefix, slog.New(slog.DiscardHandler)
			err := tt.run(t.Context(), &o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.wantOut)
			}
		})
	}
}

func TestAddressCompletesMachineNames(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"db", "web"} {
		if err := os.MkdirAll(filepath.Join(dir, "machines", n), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	env := noConfig(t, fmt.Sprintf("[paths]\nmachines = %q\nconfigs = %q\n", filepath.Join(dir, "machines"), filepath.Join(dir, "configs")))
	for _, verb := range []string{"get", "getsuffix"} {
		code, out, stderr := runCLI(t, env, "__complete", "address", verb, "")
		if code != 0 || !strings.HasPrefix(out, "db\nweb\n:4\n") {
			t.Errorf("completing address %s: status %d, stdout %q, stderr %q", verb, code, out, stderr)
		}
	}
}
