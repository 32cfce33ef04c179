package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestLoadMissingFileGivesDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.toml")
	cfg, origin, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), cfg); diff != "" {
		t.Errorf("config differs from defaults (-want +got):\n%s", diff)
	}
	if origin.Found || origin.Source("paths.cache") != "default" {
		t.Errorf("origin = %+v, want not found and default sources", origin)
	}
	if _, _, err := Load(path, true); err == nil {
		t.Error("Load(required) of a missing file succeeded, want an error")
	}
}

func TestParse(t *testing.T) {
	const file = `# test config
[paths]
cache = "/tmp/c"

[network]
ygg_prefix = "300:2e98:a4b0:1789::/64"
bridge = "br-test"

[registries]
insecure = ["reg.local:5000"]
[registries.mirrors]
"docker.io" = ["https://mirror.example.com", "http://10.0.0.1:5000"]
`
	cfg, lines, err := Parse("t.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Paths.Cache = "/tmp/c"
	want.Network.YggPrefix = "300:2e98:a4b0:1789::/64"
	want.Network.Bridge = "br-test"
	want.Registries.Insecure = []string{"reg.local:5000"}
	want.Registries.Mirrors = map[string][]string{"docker.io": {"https://mirror.example.com", "http://10.0.0.1:5000"}}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	wantLines := map[string]int{
		"paths.cache": 3, "network.ygg_prefix": 6, "network.bridge": 7,
		"registries.insecure": 10, "registries.mirrors.docker.io": 12,
	}
	if diff := cmp.Diff(wantLines, lines); diff != "" {
		t.Errorf("key lines (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string // substrings of the error
	}{
		{"unknown key", "[paths]\ncache = \"/c\"\ncahce = \"/x\"\n", []string{"t.toml:3", `unknown key "paths.cahce"`}},
		{"unknown section", "[foo]\nbar = 1\n", []string{"t.toml:1", `unknown key "foo"`}},
		{"relative path", "[paths]\n\nmachines = \"var/lib\"\n", []string{"t.toml:3", "paths.machines", "not an absolute path"}},
		{"bad prefix", "[network]\nygg_prefix = \"300::zz/64\"\n", []string{"t.toml:2", "network.ygg_prefix"}},
		{"ipv4 prefix", "[network]\nygg_prefix = \"10.0.0.0/8\"\n", []string{"network.ygg_prefix", "not an IPv6 prefix"}},
		{"bad endpoint", "[network]\nygg_admin = \"/run/ygg.sock\"\n", []string{"t.toml:2", "network.ygg_admin", "unix:///"}},
		{"bad ipv6 uplink", "[network]\nipv6_uplink = \"maybe\"\n", []string{"t.toml:2", "network.ipv6_uplink", "want auto, yes or no"}},
		{"long bridge", "[network]\nbridge = \"a-very-long-bridge-name\"\n", []string{"network.bridge", "1 to 15"}},
		{"bad uplink", "[network]\nuplink = \"eth0:1\"\n", []string{"t.toml:2", "network.uplink", "must not contain"}},
		{"bridge ipv4 not a prefix", "[network]\nipv4 = \"10.1.2.3\"\n", []string{"t.toml:2", "network.ipv4", "is not ADDRESS/PREFIX"}},
		{"bridge ipv4 is IPv6", "[network]\nipv4 = \"fc00::1/64\"\n", []string{"network.ipv4", "is not an IPv4 address"}},
		{"bridge ipv4 network address", "[network]\nipv4 = \"10.1.2.0/24\"\n", []string{"network.ipv4", "network or broadcast", "e.g. 10.1.2.1"}},
		{"bridge ipv4 broadcast", "[network]\nipv4 = \"10.1.2.255/24\"\n", []string{"network.ipv4", "network or broadcast"}},
		{"bridge ipv4 /31", "[network]\nipv4 = \"10.1.2.1/31\"\n", []string{"network.ipv4", "/8 to /30"}},
		{"bridge ipv4 loopback", "[network]\nipv4 = \"127.0.0.2/8\"\n", []string{"network.ipv4", "not a unicast address"}},
		{"wrong type", "[paths]\ncache = 3\n", []string{"t.toml:2", "paths.cache"}},
		{"syntax", "[paths\n", []string{"t.toml", "line 1"}},
		{"relative init", "[machines]\ninit = \"bin/man8s-init\"\n", []string{"t.toml:2", "machines.init", "not an absolute path"}},
		{"template", "[machines]\ndefault_template = \"docker\"\n", []string{"t.toml:2", "unknown template"}},
		{"mirror", "[registries.mirrors]\n\"docker.io\" = [\"mirror\"]\n", []string{"registries.mirrors", `mirror "mirror"`}},
		{"mirror with a path", "[registries.mirrors]\n\"docker.io\" = [\"https://m.example/dockerhub\"]\n", []string{"t.toml:2", "path prefixes are not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse("t.toml", []byte(tt.file))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRenderRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mbctl.toml")
	if err := os.WriteFile(path, []byte("[network]\nygg_prefix = \"300::/64\"\n[registries.mirrors]\n\"docker.io\" = [\"https://m.example\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, origin, err := Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	out := Render(cfg, origin)
	if !strings.Contains(string(out), path+":2") {
		t.Errorf("rendered config does not name the source line of ygg_prefix:\n%s", out)
	}
	again, _, err := Parse("rendered", out)
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, out)
	}
	if diff := cmp.Diff(cfg, again, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestPath(t *testing.T) {
	env := func(v string) func(string) string { return func(string) string { return v } }
	if got := Path("/flag.toml", env("/env.toml")); got != "/flag.toml" {
		t.Errorf("flag: got %s", got)
	}
	if got := Path("", env("/env.toml")); got != "/env.toml" {
		t.Errorf("env: got %s", got)
	}
	if got := Path("", env("")); got != DefaultPath {
		t.Errorf("default: got %s", got)
	}
}

func TestRegistryTimeouts(t *testing.T) {
	for _, tt := range []struct {
		header, idle string
		wantH, wantI time.Duration
		wantErr      string
	}{
		{"30s", "1m", 30 * time.Second, time.Minute, ""},
		{"0", "5s", -1, 5 * time.Second, ""},
		{"soon", "5s", 0, 0, "registries.header_timeout"},
		{"5s", "-1s", 0, 0, "negative"},
	} {
		h, i, err := Registries{HeaderTimeout: tt.header, IdleTimeout: tt.idle}.Timeouts()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s/%s: err %v, want %q", tt.header, tt.idle, err, tt.wantErr)
			}
			continue
		}
		if err != nil || h != tt.wantH || i != tt.wantI {
			t.Errorf("%s/%s = %v, %v, %v", tt.header, tt.idle, h, i, err)
		}
	}
}

func TestImagesFollowMachines(t *testing.T) {
	for _, tt := range []struct{ file, want string }{
		{"", "/var/lib/man8machines/.images"},
		{"[paths]\nmachines = \"/srv/m\"\n", "/srv/m/.images"},
		{"[paths]\nmachines = \"/srv/m\"\nimages = \"/srv/roots\"\n", "/srv/roots"},
	} {
		cfg, _, err := Parse("t.toml", []byte(tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Paths.Images != tt.want {
			t.Errorf("%q: images = %q, want %q", tt.file, cfg.Paths.Images, tt.want)
		}
	}
}
