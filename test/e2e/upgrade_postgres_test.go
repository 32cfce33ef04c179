package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/corpus"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/internal/testbed/tree"
)

// postgresVersionB is the postgres replica with a new layer and a changed
// and a new env value: what a new tag of the official image brings.
func postgresVersionB(t *testing.T, a v1.Image) v1.Image {
	t.Helper()
	l, err := ociimage.Layer(ociimage.File("usr/local/share/replica-version", []byte("B\n"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	b, err := mutate.AppendLayers(a, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := b.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	var env []string
	for _, kv := range cfg.Env {
		if strings.HasPrefix(kv, "GOSU_VERSION=") {
			kv = "GOSU_VERSION=b-changed"
		}
		env = append(env, kv)
	}
	cfg.Env = append(env, "REPLICA_EDITION=B")
	if b, err = mutate.Config(b, cfg); err != nil {
		t.Fatal(err)
	}
	return b
}

// Proof (issue 13): a postgres-replica machine at version A with rows
// written; version B (a new layer, a changed env value) pushed under the
// same tag; the user edited man8env.env (a comment, a changed value, a
// new key) and container.nspawn (a new Bind=); machines upgrade: B runs,
// the rows are there, every edit and comment is there, B's new key is
// there; machines rollback: A runs with the rows; rebuild after rm -rf
// of the rootfs gives A's tree again.
func TestMachinesUpgradePostgres(t *testing.T) {
	m := newMachineHost(t)
	testbed.RequireT(t, "dpkg-query", "ldd")
	psql := psqlPath(t)
	reg := registry.StartT(t, registry.Options{})
	b, err := corpus.New(corpus.WithBusybox(busybox), corpus.WithLog(t.Logf))
	if err != nil {
		t.Fatal(err)
	}
	built, err := b.Build(t.Context(), corpus.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/corpus/postgres:stable"
	pushT(t, built.Image, ref)
	c := newCorpusMachine(t, m, "pg-up")
	env := filepath.Join(t.TempDir(), "db.env")
	writeFile(t, env, "POSTGRES_PASSWORD="+corpusPassword+"\n", 0o600)
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, c.name, "--volume", "/var/lib/postgresql/data=data", "--env-file", env, "--env", "POSTGRES_DB=app")
	// A's tree as pulled, before nspawn adds its mount points and
	// Timezone=copy its /etc/localtime.
	rootTree := snapshotT(t, filepath.Join(m.work, "machines", c.name))

	query := func(sql string) string {
		t.Helper()
		run := m.startRun(t, c.name)
		var out string
		c.waitReady(t, run, func(ctx context.Context, c *corpusMachine) error {
			var err error
			out, err = c.psql(ctx, psql, sql)
			return err
		})
		if code := run.stop(t); code != 0 {
			t.Errorf("machines run: status %d\n%s", code, run.output())
		}
		return out
	}
	if out := query("INSERT INTO notes (body) VALUES ('row of A') RETURNING id"); out != "1" {
		t.Fatalf("insert on A: %q", out)
	}

	// The user's edits.
	conf := filepath.Join(m.work, "configs", c.name)
	envPath := filepath.Join(conf, "man8env.env")
	e := readFileT(t, envPath)
	if !strings.Contains(e, "POSTGRES_DB=app\n") {
		t.Fatalf("man8env.env:\n%s", e)
	}
	e = strings.Replace(e, "POSTGRES_DB=app\n", "# the app's database, named by us\nPOSTGRES_DB=app\nMAN8S_STOP_TIMEOUT=45\n", 1) + "OPERATOR_NOTE=kept\n"
	writeFile(t, envPath, e, 0o600)
	backup := filepath.Join(m.work, "pg-backup")
	if err := os.MkdirAll(backup, 0o755); err != nil {
		t.Fatal(err)
	}
	settingsPath := filepath.Join(conf, "container.nspawn")
	writeFile(t, settingsPath, readFileT(t, settingsPath)+"# our backups\nBind="+backup+":/backup\n", 0o644)

	pushT(t, postgresVersionB(t, built.Image), ref)
	if out := m.mustMbctl(t, "machines", "upgrade", "--yes", c.name); !strings.Contains(out, "Upgraded machine "+c.name) {
		t.Fatalf("upgrade:\n%s", out)
	}
	if got := readFileT(t, filepath.Join(m.work, "machines", c.name, "usr/local/share/replica-version")); got != "B\n" {
		t.Errorf("B's layer: %q", got)
	}
	e = readFileT(t, envPath)
	for _, want := range []string{"# the app's database, named by us\nPOSTGRES_DB=app\nMAN8S_STOP_TIMEOUT=45\n", "OPERATOR_NOTE=kept\n", "REPLICA_EDITION=B\n", "GOSU_VERSION=b-changed\n", "POSTGRES_PASSWORD="} {
		if !strings.Contains(e, want) {
			t.Errorf("upgraded man8env.env lacks %q:\n%s", want, e)
		}
	}
	if s := readFileT(t, settingsPath); !strings.Contains(s, "# our backups\nBind="+backup+":/backup\n") {
		t.Errorf("upgraded container.nspawn lost the user's bind:\n%s", s)
	}
	if out := query("SELECT string_agg(body, ',') FROM notes"); out != "row of A" {
		t.Errorf("B reads %q, want the row of A", out)
	}
	if out := query("INSERT INTO notes (body) VALUES ('row of B') RETURNING id"); out != "2" {
		t.Errorf("insert on B: %q", out)
	}

	m.mustMbctl(t, "machines", "rollback", c.name)
	if _, err := os.Stat(filepath.Join(m.work, "machines", c.name, "usr/local/share/replica-version")); !os.IsNotExist(err) {
		t.Errorf("after the rollback the rootfs is still B's: %v", err)
	}
	if out := query("SELECT string_agg(body, ',' ORDER BY id) FROM notes"); out != "row of A,row of B" {
		t.Errorf("A after the rollback reads %q", out)
	}

	if err := os.RemoveAll(filepath.Join(m.work, "machines", c.name)); err != nil {
		t.Fatal(err)
	}
	m.mustMbctl(t, "machines", "rebuild", "--quiet", c.name)
	if diff := tree.Diff(rootTree, snapshotT(t, filepath.Join(m.work, "machines", c.name))); len(diff) > 0 {
		t.Errorf("the rebuilt rootfs differs from A's as pulled:\n%s", strings.Join(diff, "\n"))
	}
	if out := query("SELECT count(*) FROM notes"); out != "2" {
		t.Errorf("after the rebuild: %q rows", out)
	}
	m.mustMbctl(t, "machines", "remove", "--yes", c.name)
}
