package machinefiles

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const debianPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// params returns the Params of machine name with the defaults of a pull.
func params(name, ref string, img v1.Config, mode imageinit.Mode, kind imageinit.Kind, binds ...Bind) Params {
	return Params{
		Name:        name,
		Template:    "network_isolated",
		Bridge:      "srvgrp0",
		YggAddress:  netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d"),
		ImageRef:    ref,
		ImageDigest: "sha256:4c7ad2a8e62ac1d5c9a2bb1b2e6a5f2f3b0c4d3a1e8f7a6b5c4d3e2f1a0b9c8d",
		Image:       img,
		Mode:        mode,
		KillSignal:  imageinit.KillSignal(mode, imageinit.Detection{Kind: kind}),
		EnvFile:     "/var/lib/man8machine_configs/" + name + "/man8env.env",
		Binds:       binds,
		Version:     "v0.3.0",
		Created:     time.Date(2026, 11, 28, 12, 34, 56, 789, time.FixedZone("CET", 3600)),
	}
}

// cases are real-world-shaped image configurations.
func cases() map[string]Params {
	// postgres, with what its users give at pull: the password it refuses
	// to start without, its data dir moved, man8s-init's stop timeout, and
	// the stop signal the image says already.
	postgres := params("db", "postgres:17", v1.Config{
		Env:        []string{debianPath, "GOSU_VERSION=1.17", "PG_MAJOR=17", "PGDATA=/var/lib/postgresql/data"},
		Entrypoint: []string{"docker-entrypoint.sh"},
		Cmd:        []string{"postgres"},
		StopSignal: "SIGINT",
		Volumes:    map[string]struct{}{"/var/lib/postgresql/data": {}},
	}, imageinit.Supervise, imageinit.None)
	postgres.Env = []EnvVar{
		{"POSTGRES_PASSWORD", `s3cr3t "quoted" $NOT_EXPANDED`},
		{"PGDATA", "/var/lib/postgresql/data/pgdata"},
		{"MAN8S_STOP_TIMEOUT", "60"},
		{"MAN8S_STOP_SIGNAL", "SIGINT"},
		{"POSTGRES_INITDB_ARGS", "--data-checksums"},
	}
	// A DNS server on the LAN, on a macvlan of the host's uplink.
	macvlan := params("dns", "example.com/dns:1", v1.Config{
		Env:          []string{"PATH=/usr/bin:/bin"},
		Entrypoint:   []string{"/usr/sbin/dnsd"},
		ExposedPorts: map[string]struct{}{"53/udp": {}},
	}, imageinit.Supervise, imageinit.None)
	macvlan.Template, macvlan.Uplink = "macvlan", "enp3s0"
	// A monitoring agent that must see the host's interfaces; no address
	// of its own (YggAddress is ignored).
	hostNet := params("agent", "example.com/agent:1", v1.Config{
		Env:        []string{"PATH=/usr/bin:/bin"},
		Entrypoint: []string{"/agent", "--listen=:9100"},
	}, imageinit.Supervise, imageinit.None)
	hostNet.Template = "host_network"
	hostNetStrict := hostNet
	hostNetStrict.Name, hostNetStrict.Strict, hostNetStrict.EnvFile = "agent2", true, "/var/lib/man8machine_configs/agent2/man8env.env"
	nginxConfig := v1.Config{
		Env:        []string{debianPath, "NGINX_VERSION=1.27.3", "NJS_VERSION=0.8.8", "PKG_RELEASE=1~bookworm"},
		Entrypoint: []string{"/docker-entrypoint.sh"},
		Cmd:        []string{"nginx", "-g", "daemon off;"},
		StopSignal: "SIGQUIT",
		// as the real image has it, plus a UDP and an SCTP port (left out)
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "8443/udp": {}, "9/sctp": {}},
		Healthcheck: &v1.HealthConfig{Test: []string{"CMD-SHELL", "curl -fsS http://localhost/ || exit 1"},
			Interval: 5 * time.Second, Timeout: 3 * time.Second, StartPeriod: 10 * time.Second, Retries: 2},
	}
	// nginx, published on the host (machines pull --publish).
	nginx := params("webpub", "nginx:1.27", nginxConfig, imageinit.Supervise, imageinit.None)
	nginx.Ports = []nspawnport.Port{{Protocol: "tcp", Host: 8080, Container: 80}, {Protocol: "udp", Host: 8443, Container: 8443}}
	return map[string]Params{
		"macvlan":             macvlan,
		"host_network":        hostNet,
		"host_network_strict": hostNetStrict,
		"postgres":            postgres,
		"nginx-published":     nginx,
		"nginx":               params("web", "nginx:1.27", nginxConfig, imageinit.Supervise, imageinit.None),
		"registry": params("registry", "registry:2", v1.Config{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Entrypoint: []string{"/entrypoint.sh"},
			Cmd:        []string{"/etc/docker/registry/config.yml"},
			Volumes:    map[string]struct{}{"/var/lib/registry": {}},
		}, imageinit.Supervise, imageinit.None,
			Bind{Host: "/var/lib/man8machine_storage/registry/var/lib/registry", Container: "/var/lib/registry"}),
		"bitwarden": params("TestBWContainer3", "ghcr.io/dani-garcia/vaultwarden:1.32.0", v1.Config{
			Env: []string{
				debianPath,
				"BW_DB_FILE=/etc/bitwarden/vault.db",
				"globalSettings__baseServiceUri__internalAdmin=http://localhost:5000",
				"ASPNETCORE_URLS=http://+:5000",
				"CONNECTION=Server=db;Database=vault;User Id=sa;Password=pa$$=word",
				"GREETING=say \"hi\" to 'everyone'",
				"LANG=C.UTF-8",
				"HOME=/home/bitwarden",
				"EMPTY=",
			},
			Entrypoint: []string{"/entrypoint.sh"},
			WorkingDir: "/app",
			User:       "bitwarden:bitwarden",
			Volumes:    map[string]struct{}{"/etc/bitwarden": {}},
			// vaultwarden's own: HEALTHCHECK --interval=60s --timeout=10s CMD ["/healthcheck.sh"]
			Healthcheck: &v1.HealthConfig{Test: []string{"CMD", "/healthcheck.sh"}, Interval: 60 * time.Second, Timeout: 10 * time.Second},
		}, imageinit.Supervise, imageinit.None,
			Bind{Host: "/var/lib/man8machine_configs/TestBWContainer3/etc/bitwarden", Container: "/etc/bitwarden"},
			Bind{Host: "/srv/backup:2026/bitwarden data", Container: "/data"}),
		"distroless": params("static-app", "gcr.io/distroless/static-debian12@sha256:4c7ad2a8e62ac1d5c9a2bb1b2e6a5f2f3b0c4d3a1e8f7a6b5c4d3e2f1a0b9c8d", v1.Config{
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			Entrypoint: []string{"/app/server", "--listen=[::]:8080"},
			User:       "65532",
			WorkingDir: "/home/nonroot",
		}, imageinit.Supervise, imageinit.None),
		"systemd": params("sysd", "jrei/systemd-debian:12", v1.Config{
			Env:        []string{debianPath, "container=docker", "TERM=xterm"},
			Cmd:        []string{"/lib/systemd/systemd"},
			StopSignal: "RTMIN+3",
		}, imageinit.ExecPID1, imageinit.Systemd),
	}
}

func TestGolden(t *testing.T) {
	for name, p := range cases() {
		t.Run(name, func(t *testing.T) {
			s, err := Settings(p)
			if err != nil {
				t.Fatal(err)
			}
			e, err := Env(p)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", name+".nspawn.golden"), s.Bytes())
			golden(t, filepath.Join("testdata", name+".env.golden"), e.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// TestSettingsMeaning reads the generated settings back the way systemd
// does and checks what each key means, so the golden files are not the only
// judge.
func TestSettingsMeaning(t *testing.T) {
	p := cases()["bitwarden"]
	s, err := Settings(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := unitfile.Parse(bytes.NewReader(s.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	get := func(section, key string) string {
		v, ok := f.Get(section, key)
		if !ok {
			t.Errorf("[%s] %s missing", section, key)
		}
		return v
	}
	for _, c := range []struct{ section, key, want string }{
		{"Exec", "Boot", "no"},
		{"Exec", "ProcessTwo", "yes"},
		{"Exec", "KillSignal", "SIGRTMIN+3"},
		{"Exec", "Parameters", "/man8s-init/man8s-init"},
		{"Exec", "WorkingDirectory", "/app"},
		{"Exec", "PrivateUsers", "pick"},
		{"Network", "VirtualEthernet", "yes"},
		{"Network", "Bridge", "srvgrp0"},
		{"Files", "PrivateUsersOwnership", "map"},
	} {
		if got := get(c.section, c.key); got != c.want {
			t.Errorf("[%s] %s = %q, want %q", c.section, c.key, got, c.want)
		}
	}
	var env []string
	for _, v := range f.GetAll("Exec", "Environment") {
		words, err := unitfile.ParseEnvironment(v)
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, words...)
	}
	want := []string{debianPath, "LANG=C.UTF-8", "HOME=/home/bitwarden"}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("Environment (-want +got):\n%s", diff)
	}
	binds := f.GetAll("Files", "Bind")
	wantBinds := []string{
		"/var/lib/man8machine_configs/TestBWContainer3/man8env.env:/man8env.env:idmap",
		"/var/lib/man8machine_configs/TestBWContainer3/etc/bitwarden:/etc/bitwarden:idmap",
		`/srv/backup\:2026/bitwarden data:/data:idmap`,
	}
	if diff := cmp.Diff(wantBinds, binds); diff != "" {
		t.Errorf("Bind (-want +got):\n%s", diff)
	}
	for _, line := range strings.Split(string(s.Bytes()), "\n") {
		if strings.Contains(line, "=") && strings.Contains(line, "#") && !strings.HasPrefix(line, "#") {
			t.Errorf("a comment at the end of a line: %q", line)
		}
	}
}

func TestEnvMeaning(t *testing.T) {
	p := cases()["bitwarden"]
	e, err := Env(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := envfile.Parse(bytes.NewReader(e.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"MAN8S_CONTAINER_NAME":                          "TestBWContainer3",
		"MAN8S_CONTAINER_TEMPLATE":                      "network_isolated",
		"MAN8S_YGGDRASIL_ADDRESS":                       "300:2e98:a4b0:1789:1d44:bc13:a177:c4d",
		"MAN8S_OCI_IMAGE_URL":                           "ghcr.io/dani-garcia/vaultwarden:1.32.0",
		"MAN8S_OCI_IMAGE_DIGEST":                        p.ImageDigest,
		"MAN8S_APPLICATION_ARGS":                        "/entrypoint.sh",
		"MAN8S_APPLICATION_USER":                        "bitwarden:bitwarden",
		"MAN8S_STOP_SIGNAL":                             "SIGTERM",
		"MAN8S_INIT_MODE":                               "supervise",
		"MAN8S_MBCTL_VERSION":                           "v0.3.0",
		"MAN8S_MBCTL_CREATED_AT":                        "2026-11-28T11:34:56Z",
		"MAN8S_HEALTHCHECK":                             "CMD /healthcheck.sh",
		"MAN8S_HEALTHCHECK_INTERVAL":                    "60s",
		"MAN8S_HEALTHCHECK_TIMEOUT":                     "10s",
		"BW_DB_FILE":                                    "/etc/bitwarden/vault.db",
		"globalSettings__baseServiceUri__internalAdmin": "http://localhost:5000",
		"ASPNETCORE_URLS":                               "http://+:5000",
		"CONNECTION":                                    "Server=db;Database=vault;User Id=sa;Password=pa$$=word",
		"GREETING":                                      `say "hi" to 'everyone'`,
		"EMPTY":                                         "",
	}
	if diff := cmp.Diff(want, f.Map()); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

// TestEnvGivenAtPull: variables given at pull replace the image's values in
// place and add the others at the end, taken literally; a key given twice
// keeps the last value; the settings file does not change.
func TestEnvGivenAtPull(t *testing.T) {
	base := cases()["nginx"]
	p := base
	p.Env = []EnvVar{{"NJS_VERSION", "9"}, {"DB_URL", "postgres://u:p@db/x?a=b c"}, {"MAN8S_STOP_SIGNAL", "SIGTERM"}, {"DB_URL", "last wins"}, {"PATH", "/opt/bin"}}
	e, err := Env(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := envfile.Parse(bytes.NewReader(e.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"NJS_VERSION": "9", "NGINX_VERSION": "1.27.3", "DB_URL": "last wins", "MAN8S_STOP_SIGNAL": "SIGTERM", "PATH": "/opt/bin"} {
		if got, _ := f.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	keys := f.Keys()
	if want := []string{"NJS_VERSION", "PKG_RELEASE", "DB_URL", "PATH"}; !slices.Equal(keys[len(keys)-4:], want) {
		t.Errorf("keys end with %q, want %q: replaced in place, new ones at the end", keys[len(keys)-4:], want)
	}
	if n := strings.Count(string(e.Bytes()), "DB_URL="); n != 1 || len(f.Problems()) != 0 {
		t.Errorf("DB_URL written %d times, problems %v", n, f.Problems())
	}
	// Only replacements: no section for new keys.
	p.Env = []EnvVar{{"NJS_VERSION", "9"}}
	if e, err = Env(p); err != nil || strings.Contains(string(e.Bytes()), "Given at pull") {
		t.Errorf("replacing only: %v\n%s", err, e.Bytes())
	}
	s1, err := Settings(base)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Settings(p)
	if err != nil || !bytes.Equal(s1.Bytes(), s2.Bytes()) {
		t.Errorf("the settings changed with the env given at pull (%v)", err)
	}
}

// On a host without IPv6 uplink the env file gets MAN8S_IPV6=optional
// with a comment saying why, unless the image or the user set MAN8S_IPV6.
func TestEnvNoIPv6Uplink(t *testing.T) {
	const comment = "\n# The host had no IPv6 uplink at pull (no IPv6 default route): the machine has no IPv6\n# to the internet"
	tests := []struct {
		name      string
		change    func(p *Params)
		want      string // MAN8S_IPV6's value
		wantNote  bool
		wantCount int
	}{
		{"with uplink", func(p *Params) {}, "", false, 0},
		{"without uplink", func(p *Params) { p.NoIPv6Uplink = "no IPv6 default route" }, "optional", true, 1},
		{"user said required", func(p *Params) {
			p.NoIPv6Uplink = "no IPv6 default route"
			p.Env = []EnvVar{{"A", "1"}, {"MAN8S_IPV6", "required"}}
		}, "required", false, 1},
		{"user said optional", func(p *Params) {
			p.NoIPv6Uplink = "no IPv6 default route"
			p.Env = []EnvVar{{"MAN8S_IPV6", "optional"}}
		}, "optional", false, 1},
		{"image said required", func(p *Params) {
			p.NoIPv6Uplink = "no IPv6 default route"
			p.Image.Env = append(slices.Clone(p.Image.Env), "MAN8S_IPV6=required")
		}, "required", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := cases()["nginx"]
			tt.change(&p)
			e, err := Env(p)
			if err != nil {
				t.Fatal(err)
			}
			text := string(e.Bytes())
			if got, _ := e.Get("MAN8S_IPV6"); got != tt.want {
				t.Errorf("MAN8S_IPV6 = %q, want %q:\n%s", got, tt.want, text)
			}
			if strings.Contains(text, comment) != tt.wantNote || strings.Count(text, "MAN8S_IPV6=") != tt.wantCount {
				t.Errorf("comment %v (want %v), %d MAN8S_IPV6 lines (want %d):\n%s", !tt.wantNote, tt.wantNote, strings.Count(text, "MAN8S_IPV6="), tt.wantCount, text)
			}
			if tt.wantNote && !strings.Contains(text, comment+", and optional makes that no failure. Its ULA address and\n# Yggdrasil still work. Set required once the host has IPv6.\nMAN8S_IPV6=optional\n") {
				t.Errorf("the comment is not right above the line:\n%s", text)
			}
		})
	}
	p := cases()["nginx"]
	p.NoIPv6Uplink = "a\nb"
	if _, err := Env(p); err == nil {
		t.Error("a reason with a line break: no error")
	}
}

// awkwardArgv are argvs that are hard to quote for a shell.
var awkwardArgv = [][]string{
	{"/app", "two words", "", "it's", `say "hi"`, "$HOME", "${PATH}", "$(id)", "`id`", "*", "?", "[a]", "~", "a\\b", "tab\there", "#", ";", "&&", "|", "-", "--", "=x", "%n"},
	{"nginx", "-g", "daemon off;"},
	{""},
	{"/bin/echo", "'", `"`, `\`, "'\"'"},
}

// TestApplicationArgsThroughShell checks that a real sh runs exactly the
// original argv from MAN8S_APPLICATION_ARGS, as man8s-init runs it.
func TestApplicationArgsThroughShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		ci.Skip(t, "no sh on PATH: %v", err)
	}
	for _, argv := range awkwardArgv {
		img := v1.Config{Entrypoint: argv[:1], Cmd: argv[1:]}
		args, err := applicationArgs(img)
		if err != nil {
			t.Fatalf("applicationArgs(%q): %v", argv, err)
		}
		// Replace the program with a printer of its arguments, keeping
		// the quoted words exactly as written.
		printer := `printf '[%s]\n' "$@"`
		rest, _ := strings.CutPrefix(args, mustQuote(t, argv[:1]))
		script := "exec " + "sh -c " + mustQuote(t, []string{printer}) + " " + mustQuote(t, argv[:1]) + rest
		out, err := exec.Command(sh, "-c", script).Output()
		if err != nil {
			t.Fatalf("sh -c %q: %v", script, err)
		}
		var want strings.Builder
		for _, a := range argv[1:] {
			want.WriteString("[" + a + "]\n")
		}
		if len(argv) == 1 {
			want.WriteString("[]\n") // printf with no arguments prints its format once
		}
		if string(out) != want.String() {
			t.Errorf("argv %q as %q ran with\n%s\nwant\n%s", argv, args, out, want.String())
		}
		// man8s-init without a shell must split it the same way.
		if words, err := appargs.Words(args); err != nil || !cmp.Equal(words, argv) {
			t.Errorf("appargs.Words(%q) = %q, %v; want %q", args, words, err, argv)
		}
	}
}

func mustQuote(t *testing.T, argv []string) string {
	t.Helper()
	q, err := appargs.Quote(argv)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestErrors(t *testing.T) {
	base := cases()["nginx"]
	tests := []struct {
		name   string
		edit   func(*Params)
		in     string // "settings", "env" or "both"
		errMsg string
	}{
		{"newline in cmd", func(p *Params) { p.Image.Cmd = []string{"-c", "echo a\necho b"} }, "env", "image Cmd[1] holds a line break"},
		{"CR in entrypoint", func(p *Params) { p.Image.Entrypoint = []string{"/x\r"} }, "env", "image Entrypoint[0] holds a line break"},
		{"nothing to run", func(p *Params) { p.Image.Entrypoint, p.Image.Cmd = nil, nil }, "env", "neither Entrypoint nor Cmd"},
		{"newline in env value", func(p *Params) { p.Image.Env = append(p.Image.Env, "MOTD=a\nb") }, "env", `key "MOTD"`},
		{"newline in PATH", func(p *Params) { p.Image.Env = []string{"PATH=/bin\n/x"} }, "settings", `"PATH"`},
		{"env without =", func(p *Params) { p.Image.Env = append(p.Image.Env, "LONELY") }, "both", `image Env[4] "LONELY" is not KEY=VALUE`},
		{"image sets an mbctl key", func(p *Params) { p.Image.Env = append(p.Image.Env, "MAN8S_INIT_MODE=x") }, "env", "image Env sets MAN8S_INIT_MODE"},
		{"bad stop signal", func(p *Params) { p.Image.StopSignal = "SIGNOPE" }, "env", "image StopSignal"},
		{"bad kill signal", func(p *Params) { p.KillSignal = "" }, "settings", "KillSignal"},
		{"auto mode", func(p *Params) { p.Mode = imageinit.Auto }, "both", `init mode "auto"`},
		{"bad name", func(p *Params) { p.Name = "a b" }, "both", "invalid machine name"},
		{"bad template", func(p *Params) { p.Template = "x" }, "both", "unknown template"},
		{"relative bind", func(p *Params) { p.Binds = []Bind{{Host: "data", Container: "/data"}} }, "settings", `volume 1: bind host path "data" is not absolute`},
		{"newline in bind", func(p *Params) { p.Binds = []Bind{{Host: "/data\n", Container: "/data"}} }, "settings", "control character"},
		{"no bridge", func(p *Params) { p.Bridge = "" }, "settings", "bridge"},
		{"macvlan without uplink", func(p *Params) { p.Template = "macvlan" }, "settings", "set network.uplink in the configuration or pass --uplink IFACE"},
		{"macvlan bad uplink", func(p *Params) { p.Template, p.Uplink = "macvlan", "eth0:1" }, "settings", `uplink: interface name "eth0:1"`},
		{"macvlan without bridge", func(p *Params) { p.Template, p.Uplink, p.Bridge = "macvlan", "eth0", "" }, "settings", "bridge"},
		{"no ygg address", func(p *Params) { p.YggAddress = netip.Addr{} }, "env", "Yggdrasil"},
		{"no time", func(p *Params) { p.Created = time.Time{} }, "both", "creation time"},
		{"pull env sets an mbctl key", func(p *Params) { p.Env = []EnvVar{{"A", "1"}, {"MAN8S_CONTAINER_NAME", "x"}} }, "env", "environment given at pull: MAN8S_CONTAINER_NAME is written by mbctl"},
		{"pull env newline", func(p *Params) { p.Env = []EnvVar{{"SECRET", "echo a\necho b"}} }, "env", `environment given at pull: key "SECRET"`},
		{"pull env bad key", func(p *Params) { p.Env = []EnvVar{{"A=B", "x"}} }, "env", `key "A=B"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			p.Image.Env = append([]string(nil), base.Image.Env...)
			tt.edit(&p)
			var errs []error
			if tt.in != "env" {
				_, err := Settings(p)
				errs = append(errs, err)
			}
			if tt.in != "settings" {
				_, err := Env(p)
				errs = append(errs, err)
			}
			for _, err := range errs {
				if err == nil || !strings.Contains(err.Error(), tt.errMsg) {
					t.Errorf("got %v, want an error containing %q", err, tt.errMsg)
				}
				if err != nil && strings.Contains(err.Error(), "echo b") {
					t.Errorf("error shows the value: %v", err)
				}
			}
		})
	}
}

// Every bad value is reported, not only the first.
func TestErrorsAllReported(t *testing.T) {
	p := cases()["nginx"]
	p.Image.Env = append(append([]string(nil), p.Image.Env...), "MOTD=a\nb", "BANNER=c\nd")
	_, err := Env(p)
	for _, key := range []string{"MOTD", "BANNER"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Env: %v, want an error naming %s", err, key)
		}
	}
	p = cases()["nginx"]
	p.Image.Env = []string{"PATH=/bin\n/x", "HOME=/root\n/y"}
	_, err = Settings(p)
	for _, key := range []string{"PATH", "HOME"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Settings: %v, want an error naming %s", err, key)
		}
	}
}

// A machine on the host's network cannot publish: nspawn refuses Port=
// without a private network.
func TestPortsNeedOwnNetwork(t *testing.T) {
	p := cases()["nginx-published"]
	p.Template = "host_network"
	if _, err := Settings(p); err == nil || !strings.Contains(err.Error(), "template host_network") {
		t.Errorf("settings of a host_network machine with ports: %v", err)
	}
}
