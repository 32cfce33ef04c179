package boot

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/passwd"
	"github.com/man8s/mbctl/internal/testbed/ci"
)

// With whoEnv set, the test binary is an app that writes who it runs as to
// the file named there; with runRootEnv set, it is man8s-init for the root
// named there (exec-pid1 mode replaces the process, so it runs in one of
// its own).
const (
	whoEnv     = "MAN8S_BOOT_TEST_WHO_OUT"
	runRootEnv = "MAN8S_BOOT_TEST_RUN_ROOT"
)

func init() {
	if out := os.Getenv(whoEnv); out != "" {
		os.Exit(whoApp(out))
	}
	if root := os.Getenv(runRootEnv); root != "" {
		os.Exit(Run(context.Background(), Options{Root: root}))
	}
}

func whoApp(out string) int {
	groups, _ := os.Getgroups()
	slices.Sort(groups)
	env := func(k string) string {
		if v, ok := os.LookupEnv(k); ok {
			return fmt.Sprintf("%q", v)
		}
		return "unset"
	}
	line := fmt.Sprintf("uid=%d gid=%d groups=%v HOME=%s USER=%s LOGNAME=%s TINI_SUBREAPER=%s\n",
		os.Getuid(), os.Getgid(), groups, env("HOME"), env("USER"), env("LOGNAME"), env(keyTiniSubreaper))
	if err := os.WriteFile(out, []byte(line), 0o644); err != nil {
		return 100
	}
	return 0
}

// nspawnEnv is what systemd-nspawn gives man8s-init with no Environment=.
var nspawnEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=systemd-nspawn",
	"TERM=xterm", "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8"}

func TestAppEnviron(t *testing.T) {
	nonroot := passwd.User{Name: "nonroot", UID: 65532, GID: 65532, Groups: []uint32{65532}, Home: "/home/nonroot"}
	noEntry := passwd.User{UID: 1234, Home: "/", Groups: []uint32{0}}
	root := passwd.User{Name: "root", Home: "/root", Groups: []uint32{0}}
	scratchRoot := passwd.User{Home: "/", Groups: []uint32{0}}
	// Environment= replaces nspawn's own values.
	with := func(env []string, kvs ...string) []string { return envfile.Merge(env, kvs) }

	tests := []struct {
		name      string
		inherited []string
		file      []string
		user      passwd.User
		mode      man8env.InitMode
		want      map[string]string // the keys below; "" with absent[k] means unset
		absent    []string
	}{
		{name: "nspawn's HOME=/root gives way to the user's", inherited: nspawnEnv, user: nonroot,
			want: map[string]string{"HOME": "/home/nonroot", "TINI_SUBREAPER": "1"}, absent: []string{"USER", "LOGNAME"}},
		{name: "a user without passwd entry gets /", inherited: nspawnEnv, user: noEntry,
			want: map[string]string{"HOME": "/"}, absent: []string{"USER", "LOGNAME"}},
		{name: "root keeps /root", inherited: nspawnEnv, user: root, want: map[string]string{"HOME": "/root"}},
		{name: "root without passwd gets /", inherited: nspawnEnv, user: scratchRoot, want: map[string]string{"HOME": "/"}},
		{name: "the image's HOME in Environment= stays", inherited: with(nspawnEnv, "HOME=/srv/app"), user: nonroot,
			want: map[string]string{"HOME": "/srv/app"}},
		{name: "HOME in man8env.env stays", inherited: nspawnEnv, file: []string{"HOME=/data"}, user: nonroot,
			want: map[string]string{"HOME": "/data"}},
		{name: "HOME=/root in man8env.env stays", inherited: nspawnEnv, file: []string{"HOME=/root"}, user: nonroot,
			want: map[string]string{"HOME": "/root"}},
		{name: "an empty HOME is no HOME", inherited: nspawnEnv, file: []string{"HOME="}, user: nonroot,
			want: map[string]string{"HOME": "/home/nonroot"}},
		{name: "no HOME at all", inherited: []string{"PATH=/bin"}, user: nonroot, want: map[string]string{"HOME": "/home/nonroot", "PATH": "/bin"}},
		{name: "USER and LOGNAME from man8env.env stay", inherited: nspawnEnv, file: []string{"USER=root", "LOGNAME=app"}, user: nonroot,
			want: map[string]string{"USER": "root", "LOGNAME": "app"}},
		{name: "a USER set in Environment= stays", inherited: with(nspawnEnv, "USER=app"), user: nonroot,
			want: map[string]string{"USER": "app"}, absent: []string{"LOGNAME"}},
		{name: "TINI_SUBREAPER set by the user stays, even empty", inherited: nspawnEnv, file: []string{"TINI_SUBREAPER="}, user: nonroot,
			want: map[string]string{"TINI_SUBREAPER": ""}},
		{name: "no TINI_SUBREAPER in exec-pid1 mode", inherited: nspawnEnv, user: nonroot, mode: man8env.InitExecPID1,
			want: map[string]string{"HOME": "/home/nonroot"}, absent: []string{"TINI_SUBREAPER", "USER"}},
		{name: "man8env.env overrides the rest", inherited: nspawnEnv, file: []string{"LANG=de_DE.UTF-8", "GREETING=hi"}, user: nonroot,
			want: map[string]string{"LANG": "de_DE.UTF-8", "GREETING": "hi", "TERM": "xterm", "container": "systemd-nspawn"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode := tt.mode
			if mode == "" {
				mode = man8env.InitSupervise
			}
			env := appEnviron(tt.inherited, tt.file, tt.user, mode)
			got := map[string]string{}
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				if _, dup := got[k]; dup {
					t.Errorf("%s twice in %q", k, env)
				}
				got[k] = v
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %q (set %v), want %q\nenv: %q", k, g, ok, v, env)
				}
			}
			for _, k := range tt.absent {
				if g, ok := got[k]; ok {
					t.Errorf("%s = %q, want it unset\nenv: %q", k, g, env)
				}
			}
		})
	}
}

// userRoot returns a root with the passwd and group of an image that has a
// nonroot user (distroless' style) with one supplementary group.
func userRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile := func(p, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n")
	writeFile("etc/group", "root:x:0:\nnonroot:x:65532:\nextra:x:2000:nonroot\n")
	return root
}

func TestAppOptionsUser(t *testing.T) {
	root := userRoot(t)
	var rootCred *syscall.Credential // none outside a machine unless we are root
	if os.Geteuid() == 0 {
		rootCred = &syscall.Credential{Groups: []uint32{0}}
	}
	tests := []struct {
		spec     string
		want     *syscall.Credential
		wantHome string
		wantErr  []string
	}{
		{spec: "nonroot", want: &syscall.Credential{Uid: 65532, Gid: 65532, Groups: []uint32{65532, 2000}}, wantHome: "/home/nonroot"},
		{spec: "65532", want: &syscall.Credential{Uid: 65532, Gid: 65532, Groups: []uint32{65532, 2000}}, wantHome: "/home/nonroot"},
		{spec: "nonroot:extra", want: &syscall.Credential{Uid: 65532, Gid: 2000, Groups: []uint32{2000}}, wantHome: "/home/nonroot"},
		{spec: "1234", want: &syscall.Credential{Uid: 1234, Groups: []uint32{0}}, wantHome: "/"},
		{spec: "1234:4321", want: &syscall.Credential{Uid: 1234, Gid: 4321, Groups: []uint32{4321}}, wantHome: "/"},
		{spec: "", want: rootCred, wantHome: "/root"},
		{spec: "nobody-here", wantErr: []string{`MAN8S_APPLICATION_USER=nobody-here in man8env.env (the image's USER): user "nobody-here" is not in ` + filepath.Join(root, "etc/passwd"), "add it to the image's /etc/passwd"}},
		{spec: "nonroot:staff", wantErr: []string{`group "staff" is not in ` + filepath.Join(root, "etc/group"), "add it to the image's /etc/group"}},
	}
	for _, tt := range tests {
		o, u, err := appOptions(root, map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyUser: tt.spec})
		if tt.wantErr != nil {
			if err == nil {
				t.Errorf("appOptions(%q) succeeded, want an error", tt.spec)
				continue
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("appOptions(%q) error %q lacks %q", tt.spec, err, w)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("appOptions(%q): %v", tt.spec, err)
			continue
		}
		if diff := cmp.Diff(tt.want, o.Credential); diff != "" {
			t.Errorf("appOptions(%q) credential (-want +got):\n%s", tt.spec, diff)
		}
		if u.Home != tt.wantHome {
			t.Errorf("appOptions(%q) home %q, want %q", tt.spec, u.Home, tt.wantHome)
		}
	}
}

// runnableCopy copies the test binary into a directory every user may
// enter, so that an app started as another user can run it, and returns
// the copy and a directory every user may write to.
func runnableCopy(t *testing.T) (string, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// t.TempDir's parent is private to us.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil { // umask
		t.Fatal(err)
	}
	return bin, out
}

// Proof (issue 12): the app runs as the image's USER with Docker's uid,
// gid, groups and HOME, and without nspawn's HOME=/root, USER=root and
// LOGNAME=root, in both init modes; supervised, tini is told to be a
// subreaper. Before, an app under USER nonroot saw HOME=/root.
func TestRunGivesTheAppItsUser(t *testing.T) {
	ci.RequireRoot(t, "the app runs as other users")
	bin, outDir := runnableCopy(t)
	tests := []struct {
		user, mode string
		want       string
	}{
		{"nonroot", "", `uid=65532 gid=65532 groups=[2000 65532] HOME="/home/nonroot" USER=unset LOGNAME=unset TINI_SUBREAPER="1"`},
		{"1234", "", `uid=1234 gid=0 groups=[0] HOME="/" USER=unset LOGNAME=unset TINI_SUBREAPER="1"`},
		{"nonroot:extra", "", `uid=65532 gid=2000 groups=[2000] HOME="/home/nonroot" USER=unset LOGNAME=unset TINI_SUBREAPER="1"`},
		{"", "", `uid=0 gid=0 groups=[0] HOME="/root" USER=unset LOGNAME=unset TINI_SUBREAPER="1"`},
		{"nonroot", "exec-pid1", `uid=65532 gid=65532 groups=[2000 65532] HOME="/home/nonroot" USER=unset LOGNAME=unset TINI_SUBREAPER=unset`},
		{"1234:4321", "exec-pid1", `uid=1234 gid=4321 groups=[4321] HOME="/" USER=unset LOGNAME=unset TINI_SUBREAPER=unset`},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s %s", tt.user, tt.mode), func(t *testing.T) {
			root := userRoot(t)
			out := filepath.Join(outDir, fmt.Sprint(i))
			vars := map[string]string{man8env.KeyArgs: bin, man8env.KeyUser: tt.user, whoEnv: out}
			if tt.mode != "" {
				vars[man8env.KeyInitMode] = tt.mode
			}
			writeEnv(t, root, vars)
			// What nspawn gives man8s-init.
			for _, kv := range nspawnEnv {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			var log bytes.Buffer
			if tt.mode == "" {
				if status := Run(t.Context(), Options{Root: root, Log: &log}); status != 0 {
					t.Fatalf("status %d\n%s", status, log.String())
				}
			} else {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin)
				cmd.Env = append(os.Environ(), runRootEnv+"="+root)
				cmd.Stdout, cmd.Stderr = &log, &log
				if err := cmd.Run(); err != nil {
					t.Fatalf("man8s-init in exec-pid1 mode: %v\n%s", err, log.String())
				}
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("the app did not run: %v\n%s", err, log.String())
			}
			if strings.TrimSpace(string(got)) != tt.want {
				t.Errorf("the app saw\n%s\nwant\n%s\nlog:\n%s", got, tt.want, log.String())
			}
			if !strings.Contains(log.String(), "(uid ") {
				t.Errorf("the app's step line does not say who it runs as:\n%s", log.String())
			}
		})
	}
}
