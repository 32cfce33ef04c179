package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// versionApp is version ver of an app that prints what it sees, appends
// its version to its data volume's rows and exits.
func versionApp(t *testing.T, ver string, env []string, volumes []string, extra ...v1.Layer) v1.Image {
	t.Helper()
	script := `echo "app ` + ver + ` level=$APP_LEVEL mode=$APP_MODE key=$MY_KEY new=$APP_NEW"
echo ` + ver + ` >> /var/lib/app/rows
echo "rows: $(cat /var/lib/app/rows | tr '\n' ' ')"
`
	l, err := ociimage.Layer(ociimage.File("app.sh", []byte(script), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "/app.sh"},
		Env:        append([]string{ociimage.DefaultPath}, env...),
		Volumes:    volumes,
	}, append(extra, l)...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// editMachine makes a user's edits: a comment and a changed value and a
// new key in man8env.env, a new Bind= in container.nspawn.
func editMachine(t *testing.T, work, name string) {
	t.Helper()
	envPath := filepath.Join(work, "configs", name, "man8env.env")
	env := readFileT(t, envPath)
	env = strings.Replace(env, "APP_MODE=prod\n", "# debugging the app\nAPP_MODE=debug\n", 1) + "MY_KEY=mine\n"
	writeFile(t, envPath, env, 0o600)
	backup := filepath.Join(work, "backup")
	if err := os.MkdirAll(backup, 0o755); err != nil {
		t.Fatal(err)
	}
	settingsPath := filepath.Join(work, "configs", name, "container.nspawn")
	writeFile(t, settingsPath, readFileT(t, settingsPath)+"Bind="+backup+":/backup\n", 0o644)
}

// Proof (issue 13): a machine at version 1 with rows written and files
// edited by the user; version 2 (a new layer, a changed and a new env
// value, a new volume) pushed under the same tag; upgrade: 2 runs, the rows
// are there, every edit and comment is there, the new key is there;
// rollback: 1 runs with the rows; remove leaves nothing.
func TestMachinesUpgradeRollback(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/versioned:stable"
	pushT(t, versionApp(t, "v1", []string{"APP_MODE=prod", "APP_LEVEL=1"}, []string{"/var/lib/app"}), ref)
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", ref, "up1")
	if out := m.mustMbctl(t, "machines", "run", "up1"); !strings.Contains(out, "app v1 level=1 mode=prod") || !strings.Contains(out, "rows: v1 ") {
		t.Fatalf("v1:\n%s", out)
	}
	editMachine(t, m.work, "up1")
	// A secret: its file and its bind survive upgrade and rollback.
	set := m.mbctl(t.Context(), "machines", "secret", "set", "up1", "APP_TOKEN")
	set.Stdin = strings.NewReader("t0ken\n")
	if out, err := set.CombinedOutput(); err != nil {
		t.Fatalf("secret set: %v\n%s", err, out)
	}
	// A published port (issue 15): its Port= line survives them too.
	m.mustMbctl(t, "machines", "publish", "up1", "9090:80")
	secretKept := func(when string) {
		t.Helper()
		settings := readFileT(t, filepath.Join(m.work, "configs/up1/container.nspawn"))
		if strings.Count(settings, "\nPort=tcp:9090:80\n") != 1 {
			t.Errorf("%s: the published port is not there once:\n%s", when, settings)
		}
		if !strings.Contains(settings, "BindReadOnly="+filepath.Join(m.work, "configs/up1/secrets")+":/run/secrets:idmap\n") {
			t.Errorf("%s: the secrets bind is gone:\n%s", when, settings)
		}
		if got := readFileT(t, filepath.Join(m.work, "configs/up1/secrets/APP_TOKEN")); got != "t0ken" {
			t.Errorf("%s: secret %q", when, got)
		}
	}

	if out := m.mustMbctl(t, "machines", "upgrade", "up1"); !strings.Contains(out, "is up to date") {
		t.Errorf("upgrade before the tag moved:\n%s", out)
	}
	patch, err := ociimage.Layer(ociimage.File("var/log/app/README", []byte("logs of v2\n"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, versionApp(t, "v2", []string{"APP_MODE=prod", "APP_LEVEL=2", "APP_NEW=yes"}, []string{"/var/lib/app", "/var/log/app"}, patch), ref)

	dry := m.mustMbctl(t, "machines", "upgrade", "--dry-run", "--yes", "up1")
	for _, want := range []string{"-APP_LEVEL=1", "+APP_LEVEL=2", "+APP_NEW=yes", "nothing changed (--dry-run)"} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run lacks %q:\n%s", want, dry)
		}
	}
	if out := m.mustMbctl(t, "machines", "run", "up1"); !strings.Contains(out, "app v1 level=1") {
		t.Fatalf("after a dry run the machine changed:\n%s", out)
	}

	out := m.mustMbctl(t, "machines", "upgrade", "--yes", "up1")
	if !strings.Contains(out, "Upgraded machine up1") || !strings.Contains(out, "New volume /var/log/app: data") {
		t.Errorf("upgrade:\n%s", out)
	}
	out = m.mustMbctl(t, "machines", "run", "up1")
	if !strings.Contains(out, "app v2 level=2 mode=debug key=mine new=yes") || !strings.Contains(out, "rows: v1 v1 v2 ") {
		t.Errorf("v2 after the upgrade:\n%s", out)
	}
	env := readFileT(t, filepath.Join(m.work, "configs/up1/man8env.env"))
	for _, want := range []string{"# debugging the app\nAPP_MODE=debug\n", "MY_KEY=mine\n", "APP_NEW=yes\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("upgraded man8env.env lacks %q:\n%s", want, env)
		}
	}
	settings := readFileT(t, filepath.Join(m.work, "configs/up1/container.nspawn"))
	if !strings.Contains(settings, "Bind="+filepath.Join(m.work, "backup")+":/backup\n") || !strings.Contains(settings, "/var/log/app:idmap") {
		t.Errorf("upgraded container.nspawn:\n%s", settings)
	}
	if got := readFileT(t, filepath.Join(m.work, "storage/up1/var/log/app/README")); got != "logs of v2\n" {
		t.Errorf("new volume: %q", got)
	}
	if out := m.mustMbctl(t, "machines", "upgrade", "up1"); !strings.Contains(out, "is up to date") {
		t.Errorf("second upgrade:\n%s", out)
	}
	secretKept("after the upgrade")

	if out := m.mustMbctl(t, "machines", "rollback", "up1"); !strings.Contains(out, "Rolled machine up1 back") {
		t.Errorf("rollback:\n%s", out)
	}
	out = m.mustMbctl(t, "machines", "run", "up1")
	if !strings.Contains(out, "app v1 level=1 mode=debug key=mine new=") || !strings.Contains(out, "rows: v1 v1 v2 v1 ") {
		t.Errorf("v1 after the rollback:\n%s", out)
	}
	secretKept("after the rollback")

	// The config dir alone gives the machine back, at the digest it
	// records (the tag has moved on since).
	if err := os.RemoveAll(filepath.Join(m.work, "machines/up1")); err != nil {
		t.Fatal(err)
	}
	if out := m.mustMbctl(t, "machines", "rebuild", "--quiet", "up1"); !strings.Contains(out, "Rebuilt machine up1") {
		t.Errorf("rebuild:\n%s", out)
	}
	if out := m.mustMbctl(t, "machines", "run", "up1"); !strings.Contains(out, "app v1 level=1 mode=debug") || !strings.Contains(out, "rows: v1 v1 v2 v1 v1 ") {
		t.Errorf("v1 after the rebuild:\n%s", out)
	}
	secretKept("after the rebuild")

	// remove --keep-data keeps the config dir and the storage dir: a pull
	// over them is refused without --adopt, and with it the machine is
	// back, on the tag's image (v2), with its files and rows.
	m.mustMbctl(t, "machines", "remove", "--yes", "--keep-data", "up1")
	if out, err := m.mbctl(t.Context(), "machines", "pull", "--quiet", "--yes", ref, "up1").CombinedOutput(); err == nil || !strings.Contains(string(out), "--adopt") {
		t.Errorf("pull over kept data without --adopt: %v\n%s", err, out)
	}
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", "--adopt", ref, "up1")
	if out := m.mustMbctl(t, "machines", "run", "up1"); !strings.Contains(out, "app v2 level=2 mode=debug key=mine new=yes") || !strings.Contains(out, "rows: v1 v1 v2 v1 v1 v2 ") {
		t.Errorf("after remove --keep-data and pull --adopt:\n%s", out)
	}
	secretKept("after pull --adopt")

	m.mustMbctl(t, "machines", "remove", "--yes", "up1")
	for _, dir := range []string{"machines", "configs", "storage"} {
		if ents, err := os.ReadDir(filepath.Join(m.work, dir)); err != nil || len(ents) != 0 {
			t.Errorf("%s after remove: %v %v", dir, ents, err)
		}
	}
}

// Proof (issue 13, never lose data): kill -9 of machines upgrade before
// and between its swaps; the next mbctl run takes the machine back to the
// old version, which runs with its data; the upgrade then succeeds.
func TestMachinesUpgradeKilled(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/versioned:stable"
	pushT(t, versionApp(t, "v1", []string{"APP_MODE=prod", "APP_LEVEL=1"}, []string{"/var/lib/app"}), ref)
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", ref, "cut1")
	m.mustMbctl(t, "machines", "run", "cut1")
	pushT(t, versionApp(t, "v2", []string{"APP_MODE=prod", "APP_LEVEL=2"}, []string{"/var/lib/app"}, randomImageLayer(t, 1<<20)), ref)
	conf := filepath.Join(m.work, "mbctl.toml")
	if _, err := os.Stat(conf); err != nil {
		t.Fatalf("the testbed's mbctl config: %v", err)
	}
	rows := "v1 "
	for _, at := range []string{"unpack", "swap", "swap:rootfs", "swap:files"} {
		t.Run(at, func(t *testing.T) {
			kill9(t, startPaused(t, conf, at, "machines", "upgrade", "--quiet", "cut1"))
			out := m.mustMbctl(t, "machines", "run", "cut1")
			rows += "v1 "
			if !strings.Contains(out, "app v1 level=1") || !strings.Contains(out, "rows: "+rows) {
				t.Errorf("killed before %s, the machine is not the old one:\n%s", at, out)
			}
		})
	}
	m.mustMbctl(t, "machines", "upgrade", "--quiet", "cut1")
	if out := m.mustMbctl(t, "machines", "run", "cut1"); !strings.Contains(out, "app v2 level=2") {
		t.Errorf("the upgrade after the kills:\n%s", out)
	}
}
