package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// scratchImage is an image built FROM scratch, the way Go services are
// shipped: one static binary (here the static busybox, as /busybox), an
// /etc/passwd, nothing else; no /usr, no /bin, no shell. Its entrypoint
// runs script with busybox's own sh.
func scratchImage(t *testing.T, script string, env ...string) v1.Image {
	t.Helper()
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ociimage.Layer(
		ociimage.File("busybox", bb, 0o755),
		ociimage.Dir("etc", 0o755),
		ociimage.File("etc/passwd", []byte("root:x:0:0:root:/:/busybox\nnobody:x:65534:65534:nobody:/:/busybox\n"), 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image(ociimage.AppConfig{
		Entrypoint: []string{"/busybox", "sh", "-c"}, Cmd: []string{script},
		Env: append([]string{"PATH=/"}, env...),
	}, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// topLevel lists the names in dir.
func topLevel(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Proof (issue 12, FROM scratch): an image with no /usr is pulled and runs
// under the real systemd-nspawn, which refuses a tree without /usr/. The
// pull adds an empty /usr, root's, and nothing else beyond man8s-init and
// its /bin/sh; `oci download` of the same image adds nothing; in the
// machine the app runs and /usr is empty.
func TestScratchImagePullsAndRuns(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/scratch:1"
	pushT(t, scratchImage(t, `echo "scratch app up as $(/busybox id -u), /usr holds [$(/busybox ls -A /usr)]"; exit 3`), ref)

	// oci download: the tree exactly as the image says.
	dl := filepath.Join(t.TempDir(), "dl")
	mustMbctl(t, m.mb.Config, "oci", "download", "--quiet", ref, dl)
	if got := topLevel(t, dl); !slices.Equal(got, []string{"busybox", "etc"}) {
		t.Errorf("oci download made %q, want only the image's [busybox etc]", got)
	}

	out := m.mustMbctl(t, "machines", "pull", "--quiet", ref, "scratch1")
	if !strings.Contains(out, "The image has no /usr: made an empty one") {
		t.Errorf("pull did not say it made /usr:\n%s", out)
	}
	rootfs := filepath.Join(m.work, "machines", "scratch1")
	if got, want := topLevel(t, rootfs), []string{"bin", "busybox", "etc", "man8s-init", "usr"}; !slices.Equal(got, want) {
		t.Errorf("rootfs after the pull holds %q, want %q (/bin for man8s-init's shell link)", got, want)
	}
	fi, err := os.Lstat(filepath.Join(rootfs, "usr"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != os.ModeDir|0o755 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("/usr: mode %v, owner %d:%d; want a 0755 dir owned by 0:0", fi.Mode(), st.Uid, st.Gid)
	}
	if got := topLevel(t, filepath.Join(rootfs, "usr")); len(got) != 0 {
		t.Errorf("/usr holds %q", got)
	}

	// Run: nspawn accepts the tree, the app runs as root in the machine
	// and sees an empty /usr; its exit status is mbctl's.
	run := m.startRun(t, "scratch1")
	if code := run.wait(t); code != 3 {
		t.Errorf("machines run: status %d, want the app's 3\n%s", code, run.output())
	}
	if !strings.Contains(run.output(), "scratch app up as 0, /usr holds []") {
		t.Errorf("the app did not run, or saw a non-empty /usr:\n%s", run.output())
	}
	if strings.Contains(run.output(), "OS tree") {
		t.Errorf("nspawn refused the tree:\n%s", run.output())
	}
	if got := topLevel(t, filepath.Join(rootfs, "usr")); len(got) != 0 {
		t.Errorf("/usr holds %q after the run", got)
	}

	// oci man8init on the downloaded tree makes it runnable the same way.
	out = mustMbctl(t, m.mb.Config, "oci", "man8init", dl)
	if !strings.Contains(out, "created /usr, empty") {
		t.Errorf("oci man8init did not make /usr:\n%s", out)
	}
	if got := topLevel(t, filepath.Join(dl, "usr")); len(got) != 0 {
		t.Errorf("/usr after man8init holds %q", got)
	}
	writeFile(t, filepath.Join(dl, "man8env.env"), "MAN8S_APPLICATION_ARGS=/busybox sh -c 'echo man8init tree up; exit 4'\n", 0o644)
	nout, err := nspawn(t, dl, "scratch-m8i", []string{"--as-pid2"}, "/man8s-init/man8s-init")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 || !strings.Contains(nout, "man8init tree up") {
		t.Errorf("the man8init'ed tree under nspawn: %v, want status 4 and the app's line\n%s", err, nout)
	}
}

// Proof (issue 12, environment at pull): postgres-style configuration given
// at pull reaches the app: the image's ENV, then --env-file lines, then
// --env flags, the later winning, every value literal. --json names the
// keys and never a value; an --env-file with a line that would not do what
// it looks like fails the pull before anything is made.
func TestPullEnvReachesTheApp(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/scratch-env:1"
	const keys = "GREETING|KEEP|FILEVAR|POSTGRES_PASSWORD|TRICKY|MAN8S_STOP_TIMEOUT"
	pushT(t, scratchImage(t, `/busybox env | /busybox grep -E '^(`+keys+`)=' | /busybox sort | /busybox sed 's/^/env: /'`,
		"GREETING=from the image", "KEEP=the image's"), ref)

	dir := t.TempDir()
	envFile := filepath.Join(dir, "db.env")
	writeFile(t, envFile, "# db settings\nGREETING=from the file\nFILEVAR=only in the file\r\nPOSTGRES_PASSWORD=replaced by the flag\n", 0o600)
	const password = `s3cr3t "q" $HOME 'x'`
	cmd := m.mbctl(t.Context(), "machines", "pull", "--quiet", "--json", ref, "env1", "--env-file", envFile,
		"--env", "POSTGRES_PASSWORD="+password, "-e", "TRICKY=a=b  c ", "--env", "MAN8S_STOP_TIMEOUT=7")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, stderr.String())
	}
	var report struct {
		EnvKeys []string `json:"env_keys"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("pull --json: %v\n%s", err, out)
	}
	if want := []string{"GREETING", "FILEVAR", "POSTGRES_PASSWORD", "TRICKY", "MAN8S_STOP_TIMEOUT"}; !slices.Equal(report.EnvKeys, want) {
		t.Errorf("env_keys = %q, want %q", report.EnvKeys, want)
	}
	if strings.Contains(string(out)+stderr.String(), "s3cr3t") {
		t.Errorf("pull printed a value:\n%s\n%s", out, stderr.String())
	}

	run := m.startRun(t, "env1")
	if code := run.wait(t); code != 0 {
		t.Fatalf("machines run: status %d\n%s", code, run.output())
	}
	var got []string
	for _, l := range strings.Split(run.output(), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(l, "\r"), "env: "); ok {
			got = append(got, v)
		}
	}
	want := []string{
		"FILEVAR=only in the file", "GREETING=from the file", "KEEP=the image's", "MAN8S_STOP_TIMEOUT=7",
		"POSTGRES_PASSWORD=" + password, "TRICKY=a=b  c ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("the app's environment:\n got %q\nwant %q\n%s", got, want, run.output())
	}

	// A bad line in the file: refused, naming it; nothing made.
	writeFile(t, envFile, "POSTGRES_PASSWORD=ok\nexport POSTGRES_USER=app\n", 0o600)
	bad, err := m.mbctl(t.Context(), "machines", "pull", "--quiet", ref, "env2", "--env-file", envFile).CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "line 2: defines a variable named \"export POSTGRES_USER\"") {
		t.Errorf("pull with a bad env file: %v\n%s", err, bad)
	}
	for _, d := range []string{"machines", "configs", "storage"} {
		if _, err := os.Lstat(filepath.Join(m.work, d, "env2")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused pull made %s/env2 (%v)", d, err)
		}
	}
	if n, _ := filepath.Glob(filepath.Join(m.work, "*", ".*mbctl-staging*")); len(n) > 0 {
		t.Errorf("a refused pull left %q", n)
	}
}
