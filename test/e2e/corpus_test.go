package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ci"
	"github.com/man8s/mbctl/internal/testbed/corpus"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// The real clients the corpus is checked with, from Debian (psql from
// postgresql-client-NN, found at run time).
const (
	redisCLI = "redis-cli"
	curlBin  = "curl"
)

// corpusPassword is the postgres replica's superuser password, given at
// pull in an --env-file as a user would.
const corpusPassword = `corpus "pw" $HOME`

// corpusCase is one replica's lifecycle in TestCorpus.
type corpusCase struct {
	replica string
	// pull are the pull's flags after the reference and the name.
	pull func(t *testing.T) []string
	// ready makes one attempt at the app's own check (a query, a GET, a
	// PING) on its address; nil when it answers.
	ready func(ctx context.Context, c *corpusMachine) error
	// write changes the app's data; kept checks, after a stop and a
	// start, that the change is there.
	write, kept func(t *testing.T, c *corpusMachine)
	// procs say which user each of the app's processes runs as; inspect,
	// if set, looks further at them.
	procs   []procRule
	inspect func(t *testing.T, procs []machineProc)
	// firstRun are patterns the first run's output has: how the app
	// started, and its own clean shutdown at the stop; notFirstRun
	// patterns it must not have. (A stop is orderly: `machines run`
	// exits 0 whatever the app's status.)
	firstRun, notFirstRun []string
	// secondRun are patterns the second run's output has, notSecondRun
	// patterns it must not have (a recovery after an unclean stop).
	secondRun, notSecondRun []string
}

// procRule is a process of the app: the start of its command line and the
// uid and gid it runs as in the machine.
type procRule struct {
	cmdline  string
	uid, gid int
}

// appExitedZero matches either of man8s-init's lines that say the app
// exited with status 0: the supervisor's and the step after it. nspawn's
// console forwarding can lose the last lines when the machine ends, and
// the step comes last.
const appExitedZero = `man8s-init: app: (exited with status 0|application exited status=0)`

// Proof (issue 12, the corpus): replicas of real images, built from Debian
// packages by internal/testbed/corpus, each through the whole lifecycle on
// one testbed host: pull (with --env-file and volumes as a user gives
// them), run, the app's own check from the testbed host on the machine's
// Yggdrasil address (psql, curl, redis-cli), a write, the users of the
// app's processes (from /proc on the host, mapped through the machine's
// user namespace), a stop that is the app's clean shutdown (its own log
// lines), a second start that finds the write, and a remove that leaves
// nothing. The replicas run in parallel.
func TestCorpus(t *testing.T) {
	m := newMachineHost(t)
	testbed.RequireT(t, curlBin, redisCLI, "dpkg-query", "ldd")
	psql := psqlPath(t)
	reg := registry.StartT(t, registry.Options{})
	start := time.Now()
	t.Cleanup(func() { t.Logf("the corpus took %v", time.Since(start).Round(time.Second)) })

	cases := []corpusCase{
		{
			replica: corpus.Postgres,
			pull: func(t *testing.T) []string {
				env := filepath.Join(t.TempDir(), "db.env")
				writeFile(t, env, "POSTGRES_PASSWORD="+corpusPassword+"\n", 0o600)
				return []string{"--volume", "/var/lib/postgresql/data=data", "--env-file", env, "--env", "POSTGRES_DB=app"}
			},
			ready: func(ctx context.Context, c *corpusMachine) error {
				out, err := c.psql(ctx, psql, "SELECT current_user || ' on ' || host(inet_server_addr())")
				if err != nil {
					return err
				}
				if want := "postgres on " + c.addr.String(); out != want {
					return fmt.Errorf("psql: %q, want %q", out, want)
				}
				return nil
			},
			write: func(t *testing.T, c *corpusMachine) {
				if out, err := c.psql(t.Context(), psql, "INSERT INTO notes (body) VALUES ('written before the stop') RETURNING id"); err != nil || out != "1" {
					t.Errorf("psql INSERT: %q, %v", out, err)
				}
			},
			kept: func(t *testing.T, c *corpusMachine) {
				if out, err := c.psql(t.Context(), psql, "SELECT body FROM notes"); err != nil || out != "written before the stop" {
					t.Errorf("psql SELECT after the restart: %q, %v", out, err)
				}
				if _, err := os.Stat(filepath.Join(c.storage, "var/lib/postgresql/data/PG_VERSION")); err != nil {
					t.Errorf("the cluster is not in the machine's storage dir: %v", err)
				}
			},
			// The postmaster and its background processes.
			procs: []procRule{{"postgres", 999, 999}, {"postgres: checkpointer", 999, 999}, {"postgres: walwriter", 999, 999}},
			firstRun: []string{
				`running /docker-entrypoint-initdb.d/10-notes.sql`,
				`PostgreSQL init process complete; ready for start up.`,
				`received fast shutdown request`, `database system is shut down`,
				appExitedZero,
			},
			secondRun: []string{
				`PostgreSQL Database directory appears to contain a database; Skipping initialization`,
				`database system was shut down at`,
			},
			notSecondRun: []string{`database system was interrupted`, `automatic recovery in progress`, `redo starts`},
		},
		{
			replica: corpus.Nginx,
			pull: func(t *testing.T) []string {
				return []string{"--env", "NGINX_GREETING=hello from the pull"}
			},
			ready: func(ctx context.Context, c *corpusMachine) error {
				// Port 80 answers on IPv6 only because
				// 10-listen-on-ipv6-by-default.sh added the listen.
				if err := c.get(ctx, 80, "/", "Welcome to nginx!"); err != nil {
					return err
				}
				return c.get(ctx, 8080, "/greeting", "hello from the pull\n")
			},
			write: func(t *testing.T, c *corpusMachine) {
				if out, err := c.curl(t.Context(), "--fail", "-X", "PUT", "--data-binary", "uploaded before the stop", c.url(8080, "/uploads/note.txt")); err != nil {
					t.Errorf("PUT /uploads/note.txt: %v\n%s", err, out)
				}
			},
			kept: func(t *testing.T, c *corpusMachine) {
				if err := c.get(t.Context(), 8080, "/uploads/note.txt", "uploaded before the stop"); err != nil {
					t.Error(err)
				}
				// Written by a worker, as nginx (101), into the rootfs.
				if uid, gid := ownerOf(t, filepath.Join(c.rootfs, "srv/uploads/note.txt")); uid != 101 || gid != 101 {
					t.Errorf("the upload is owned by %d:%d, want nginx's 101:101", uid, gid)
				}
			},
			procs: []procRule{{"nginx: master process nginx -g daemon off;", 0, 0}, {"nginx: worker process", 101, 101}},
			firstRun: []string{
				`launching /docker-entrypoint.d/10-listen-on-ipv6-by-default.sh`,
				`10-listen-on-ipv6-by-default.sh: info: Enabled listen on IPv6 in /etc/nginx/conf.d/default.conf`,
				`20-envsubst-on-templates.sh: Running envsubst on /etc/nginx/templates/uploads.conf.template to /etc/nginx/conf.d/uploads.conf`,
				`signal 3 \(SIGQUIT\) received`, `gracefully shutting down`, `\[notice\] \d+#\d+: exit\r?$`,
				appExitedZero,
			},
			secondRun: []string{`listens on IPv6 already`},
		},
		{
			replica: corpus.Redis,
			pull:    func(t *testing.T) []string { return []string{"--volume", "/data=data"} },
			ready: func(ctx context.Context, c *corpusMachine) error {
				if out, err := c.redis(ctx, "PING"); err != nil || out != "PONG" {
					return fmt.Errorf("redis-cli PING: %q, %v", out, err)
				}
				return nil
			},
			write: func(t *testing.T, c *corpusMachine) {
				if out, err := c.redis(t.Context(), "SET", "corpus:key", "set before the stop"); err != nil || out != "OK" {
					t.Errorf("redis-cli SET: %q, %v", out, err)
				}
			},
			kept: func(t *testing.T, c *corpusMachine) {
				if out, err := c.redis(t.Context(), "GET", "corpus:key"); err != nil || out != "set before the stop" {
					t.Errorf("redis-cli GET after the restart: %q, %v", out, err)
				}
				if uid, _ := ownerOf(t, filepath.Join(c.storage, "data/dump.rdb")); uid != 999 {
					t.Errorf("dump.rdb in the storage dir is owned by %d, want redis's 999", uid)
				}
			},
			procs: []procRule{{"redis-server *:6379", 999, 999}},
			firstRun: []string{`Received SIGTERM scheduling shutdown`, `DB saved on disk`, `Redis is now ready to exit, bye bye`,
				appExitedZero},
			secondRun: []string{`DB loaded from disk`},
		},
		{
			replica: corpus.StaticScratch,
			pull:    func(t *testing.T) []string { return []string{"--volume", "/www/files=data"} },
			ready: func(ctx context.Context, c *corpusMachine) error {
				return c.get(ctx, 8080, "/", "served FROM scratch")
			},
			// The app only reads: the write is a file put into its
			// volume from a shell in the machine, served after the
			// restart.
			write: func(t *testing.T, c *corpusMachine) {
				c.m.mustMbctl(t, "machines", "shell", c.name, "--", "/bin/sh", "-c", "echo put before the stop > /www/files/note.txt")
			},
			kept: func(t *testing.T, c *corpusMachine) {
				if err := c.get(t.Context(), 8080, "/files/note.txt", "put before the stop\n"); err != nil {
					t.Error(err)
				}
				if _, err := os.Stat(filepath.Join(c.rootfs, "usr")); err != nil {
					t.Errorf("the pull made no /usr for nspawn: %v", err)
				}
			},
			procs: []procRule{{"/httpd -f -v -p [::]:8080 -h /www", 65532, 65532}},
			// httpd has no handler: SIGTERM ends it at once, as under
			// Docker (status 143), and not the SIGKILL after the timeout.
			firstRun: []string{`man8s-init: app: exited with status 143`},
		},
		{
			replica: corpus.TiniNonroot,
			// --init-mode auto runs tini as PID 1 (exec-pid1: the probe
			// shows it behaves, see TestProbePullChoosesMode); this case
			// keeps tini as the supervised app, as --no-probe gives.
			pull: func(t *testing.T) []string { return []string{"--volume", "/data=data", "--init-mode", "supervise"} },
			ready: func(ctx context.Context, c *corpusMachine) error {
				return c.get(ctx, 8080, "/", "notes: GET /cgi-bin/note?WORD")
			},
			write: func(t *testing.T, c *corpusMachine) { c.note(t, "written-before-the-stop") },
			kept: func(t *testing.T, c *corpusMachine) {
				if err := c.get(t.Context(), 8080, "/cgi-bin/note", "written-before-the-stop\n"); err != nil {
					t.Error(err)
				}
				if uid, _ := ownerOf(t, filepath.Join(c.storage, "data/notes")); uid != 65532 {
					t.Errorf("/data/notes is owned by %d, want nonroot's 65532", uid)
				}
			},
			procs: []procRule{{"/tini -- /app/serve.sh", 65532, 65532}, {"/bin/sh /app/serve.sh", 65532, 65532}, {"httpd -f -p [::]:8080", 65532, 65532}},
			// HOME as Docker sets it for USER nonroot: from /etc/passwd.
			inspect: func(t *testing.T, procs []machineProc) {
				for _, p := range procs {
					env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
					if err != nil {
						t.Error(err)
						continue
					}
					if !slices.Contains(strings.Split(string(env), "\x00"), "HOME=/home/nonroot") {
						t.Errorf("process %q has no HOME=/home/nonroot", p.cmdline)
					}
				}
			},
			// tini as a child of man8s-init registers as a subreaper
			// (TINI_SUBREAPER) and has nothing to warn about.
			notFirstRun: []string{`child subreaper`, `WARN +tini`},
			firstRun: []string{`notes: SIGTERM: stopping httpd`, `notes: stopped cleanly`,
				appExitedZero},
		},
		{
			replica: corpus.IPv4Only,
			pull:    func(t *testing.T) []string { return []string{"--volume", "/data=data"} },
			// The app listens on 0.0.0.0:8080 only; man8s-init forwards
			// its Yggdrasil address to it (issue 15), so it answers
			// there like the others, and on its IPv4 address as before.
			ready: func(ctx context.Context, c *corpusMachine) error {
				v4, err := c.ipv4(ctx)
				if err != nil {
					return err
				}
				if err := c.getFrom(ctx, "http://"+v4.String()+":8080/", "notes: GET /cgi-bin/note?WORD"); err != nil {
					return err
				}
				return c.get(ctx, 8080, "/", "notes: GET /cgi-bin/note?WORD")
			},
			write: func(t *testing.T, c *corpusMachine) { c.note(t, "written-before-the-stop") },
			kept: func(t *testing.T, c *corpusMachine) {
				if err := c.get(t.Context(), 8080, "/cgi-bin/note", "written-before-the-stop\n"); err != nil {
					t.Error(err)
				}
				// machines show says how the port is reached.
				if out := c.m.mustMbctl(t, "machines", "show", c.name); !regexp.MustCompile(`8080/tcp: forwarded`).MatchString(out) {
					t.Errorf("machines show does not say that 8080/tcp is forwarded:\n%s", out)
				}
			},
			procs: []procRule{{"/bin/sh /app/serve.sh 0.0.0.0:8080", 0, 0}, {"httpd -f -p 0.0.0.0:8080", 0, 0}},
			firstRun: []string{
				`man8s-init: forward: 8080/tcp: forwarding \[[0-9a-f:]+\]:8080 to 127\.0\.0\.1:8080 \(the app listens on IPv4 only\)`,
				`man8s-init: forward: 8080/tcp: reachable on the ygg address through the forwarder`,
				`notes: stopped cleanly`, appExitedZero,
			},
		},
	}
	if got, want := len(cases), len(corpus.Names()); got != want {
		t.Fatalf("TestCorpus has %d cases for the %d replicas of the corpus", got, want)
	}
	for _, tc := range cases {
		t.Run(tc.replica, func(t *testing.T) {
			t.Parallel()
			runCorpusCase(t, m, reg, tc)
		})
	}
}

// runCorpusCase takes one replica through its lifecycle.
func runCorpusCase(t *testing.T, m *machineHost, reg *registry.Registry, tc corpusCase) {
	began := time.Now()
	b, err := corpus.New(corpus.WithBusybox(busybox), corpus.WithLog(t.Logf))
	if err != nil {
		t.Fatal(err)
	}
	built, err := b.Build(t.Context(), tc.replica)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/corpus/" + tc.replica + ":1"
	pushT(t, built.Image, ref)
	c := newCorpusMachine(t, m, "corpus-"+tc.replica)
	m.mustMbctl(t, append([]string{"machines", "pull", "--quiet", ref, c.name}, tc.pull(t)...)...)
	show := c.show(t)
	c.rootfs, c.storage = show.Paths.Rootfs, show.Paths.StorageDir
	t.Logf("%s: init mode %s", tc.replica, show.InitMode)
	if tc.replica == corpus.Postgres {
		postgresRefusesWithoutPassword(t, m, ref)
	}

	// First run: the app comes up, answers, takes the write.
	run := m.startRun(t, c.name)
	c.waitReady(t, run, tc.ready)
	tc.write(t, c)
	procs := checkProcs(t, c, tc.procs)
	if tc.inspect != nil {
		tc.inspect(t, procs)
	}
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after the stop: status %d, want 0", code)
	}
	out := run.output()
	for _, p := range tc.firstRun {
		if !regexp.MustCompile(`(?m)` + p).MatchString(out) {
			t.Errorf("the first run's output lacks %q", p)
		}
	}
	for _, p := range tc.notFirstRun {
		if regexp.MustCompile(`(?m)` + p).MatchString(out) {
			t.Errorf("the first run's output has %q", p)
		}
	}
	if strings.Contains(out, "stop timeout expired") {
		t.Errorf("the app did not stop on its stop signal: man8s-init killed it")
	}
	if t.Failed() {
		t.Fatalf("first run:\n%s", out)
	}

	// Second run: the write is there, the start finds a clean state.
	run = m.startRun(t, c.name)
	c.waitReady(t, run, tc.ready)
	tc.kept(t, c)
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after the second stop: status %d, want 0", code)
	}
	out = run.output()
	for _, p := range tc.secondRun {
		if !regexp.MustCompile(`(?m)` + p).MatchString(out) {
			t.Errorf("the second run's output lacks %q", p)
		}
	}
	for _, p := range tc.notSecondRun {
		if regexp.MustCompile(`(?m)` + p).MatchString(out) {
			t.Errorf("the second run's output has %q: the first stop was not clean", p)
		}
	}
	if t.Failed() {
		t.Fatalf("second run:\n%s", out)
	}

	// remove leaves nothing of the machine.
	m.mustMbctl(t, "machines", "remove", "--yes", c.name)
	p := show.Paths
	for _, path := range []string{p.Rootfs, p.ConfigDir, p.StorageDir, p.SettingsLink, p.ImageLink} {
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after remove, %s is still there (%v)", path, err)
		}
	}
	if out := m.mustMbctl(t, "machines", "list"); strings.Contains(out, c.name) {
		t.Errorf("machines list after remove:\n%s", out)
	}
	t.Logf("%s: lifecycle in %v (image %s, %d Debian packages, from the cache: %v)",
		tc.replica, time.Since(began).Round(100*time.Millisecond), built.Key[:12], len(built.Packages), built.Cached)
}

// postgresRefusesWithoutPassword: pulled without POSTGRES_PASSWORD, the
// postgres replica says what is missing and the run exits 1, as the
// official image does under Docker.
func postgresRefusesWithoutPassword(t *testing.T, m *machineHost, ref string) {
	t.Helper()
	const name = "corpus-pg-nopw"
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", ref, name)
	run := m.startRun(t, name)
	if code := run.wait(t); code != 1 || !strings.Contains(run.output(), "no superuser password is given") {
		t.Errorf("postgres without a password: status %d, want 1 and the entrypoint's error\n%s", code, run.output())
	}
	m.mustMbctl(t, "machines", "remove", "--yes", name)
}

// corpusMachine is a replica's machine and the ways to reach its app.
type corpusMachine struct {
	m    *machineHost
	name string
	// addr is the machine's Yggdrasil address.
	addr netip.Addr
	// rootfs and storage are its root file system and storage dir.
	rootfs, storage string
}

func newCorpusMachine(t *testing.T, m *machineHost, name string) *corpusMachine {
	t.Helper()
	addr, err := yggaddr.Address(m.Ygg.Subnet, name)
	if err != nil {
		t.Fatal(err)
	}
	return &corpusMachine{m: m, name: name, addr: addr}
}

// machineShowJSON is what the corpus reads of `machines show --json`.
type machineShowJSON struct {
	InitMode string `json:"init_mode"`
	State    struct {
		Leader int `json:"leader"`
	} `json:"state"`
	Paths struct {
		Rootfs       string `json:"rootfs"`
		ConfigDir    string `json:"config_dir"`
		StorageDir   string `json:"storage_dir"`
		SettingsLink string `json:"settings_link"`
		ImageLink    string `json:"image_link"`
	} `json:"paths"`
}

func (c *corpusMachine) show(t *testing.T) machineShowJSON {
	t.Helper()
	var s machineShowJSON
	out := c.m.mustMbctl(t, "machines", "show", c.name, "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("machines show --json: %v\n%s", err, out)
	}
	return s
}

// waitReady polls ready until the app answers, for at most two minutes
// (the replicas start in parallel on a small machine).
func (c *corpusMachine) waitReady(t *testing.T, run *runningMachine, ready func(context.Context, *corpusMachine) error) {
	t.Helper()
	var last error
	ok := poll(2*time.Minute, run.done, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		last = ready(ctx, c)
		return last == nil
	})
	if !ok {
		t.Fatalf("the app of %s never answered on %s: %v\nmachine output:\n%s", c.name, c.addr, last, run.output())
	}
}

// client runs a client program in the testbed host's network namespace,
// which reaches the machine over the bridge, as another host of the mesh
// would; its stdout, trimmed, or its combined output on failure.
func (c *corpusMachine) client(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := c.m.Command(ctx, name, args...)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out) + stderr.String()), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (c *corpusMachine) psql(ctx context.Context, psql, query string) (string, error) {
	conn := fmt.Sprintf("host=%s port=5432 user=postgres dbname=app sslmode=disable connect_timeout=5", c.addr)
	return c.client(ctx, []string{"PGPASSWORD=" + corpusPassword}, psql, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-qAt", "-d", conn, "-c", query)
}

func (c *corpusMachine) redis(ctx context.Context, args ...string) (string, error) {
	return c.client(ctx, nil, redisCLI, append([]string{"-h", c.addr.String(), "-p", "6379"}, args...)...)
}

func (c *corpusMachine) url(port int, path string) string {
	return fmt.Sprintf("http://[%s]:%d%s", c.addr, port, path)
}

func (c *corpusMachine) curl(ctx context.Context, args ...string) (string, error) {
	cmd := c.m.Command(ctx, curlBin, append([]string{"-sS", "-g", "--max-time", "5"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// get GETs path on port of the machine's Yggdrasil address and wants a
// body holding want.
func (c *corpusMachine) get(ctx context.Context, port int, path, want string) error {
	return c.getFrom(ctx, c.url(port, path), want)
}

func (c *corpusMachine) getFrom(ctx context.Context, url, want string) error {
	out, err := c.curl(ctx, "--fail", url)
	if err != nil {
		return fmt.Errorf("GET %s: %v: %s", url, err, out)
	}
	if !strings.Contains(out, want) {
		return fmt.Errorf("GET %s: %q, want it to hold %q", url, out, want)
	}
	return nil
}

// note adds a note through the notes app's CGI.
func (c *corpusMachine) note(t *testing.T, word string) {
	t.Helper()
	if err := c.get(t.Context(), 8080, "/cgi-bin/note?"+word, word+"\n"); err != nil {
		t.Error(err)
	}
}

// ipv4 returns the machine's IPv4 address (its DHCP lease), read in its
// network namespace.
func (c *corpusMachine) ipv4(ctx context.Context) (netip.Addr, error) {
	cmd := c.m.mbctl(ctx, "machines", "shell", "--network-only", c.name, "--", "ip", "-4", "-o", "addr", "show", "dev", "host0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading the machine's IPv4 address: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`inet (\d+\.\d+\.\d+\.\d+)/`).FindSubmatch(out)
	if m == nil {
		return netip.Addr{}, fmt.Errorf("the machine has no IPv4 address yet:\n%s", out)
	}
	return netip.ParseAddr(string(m[1]))
}

// machineProc is a process of a machine as its own namespaces see it.
type machineProc struct {
	pid      int // on the host
	cmdline  string
	uid, gid int // in the machine
}

// machineProcs lists the app's processes in the running machine: those in
// the leader's PID namespace, but the leader (nspawn's stub init) and
// man8s-init. Ids are mapped through the machine's user namespace.
func machineProcs(t *testing.T, leader int) []machineProc {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", leader))
	if err != nil {
		t.Fatalf("the machine's PID namespace: %v", err)
	}
	uidMap := readIDMap(t, fmt.Sprintf("/proc/%d/uid_map", leader))
	gidMap := readIDMap(t, fmt.Sprintf("/proc/%d/gid_map", leader))
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var procs []machineProc
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		if pid == leader {
			continue
		}
		if l, err := os.Readlink(d + "/ns/pid"); err != nil || l != ns {
			continue
		}
		status, err := os.ReadFile(d + "/status")
		if err != nil || regexp.MustCompile(`(?m)^State:\s+[ZX]`).Match(status) {
			continue // gone, or going: a request's process that has exited
		}
		cmd, _ := os.ReadFile(d + "/cmdline")
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if strings.Contains(cmdline, "man8s-init") {
			continue
		}
		p := machineProc{pid: pid, cmdline: cmdline}
		for _, l := range strings.Split(string(status), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			id, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "Uid:":
				p.uid = mapID(uidMap, id)
			case "Gid:":
				p.gid = mapID(gidMap, id)
			}
		}
		procs = append(procs, p)
	}
	return procs
}

// idRange is a line of a uid_map or gid_map.
type idRange struct{ inside, outside, count int }

func readIDMap(t *testing.T, path string) []idRange {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m []idRange
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r idRange
		if _, err := fmt.Sscan(l, &r.inside, &r.outside, &r.count); err == nil {
			m = append(m, r)
		}
	}
	return m
}

// mapID maps a host id into the namespace of m; -1 when it has no name there.
func mapID(m []idRange, host int) int {
	for _, r := range m {
		if host >= r.outside && host < r.outside+r.count {
			return host - r.outside + r.inside
		}
	}
	return -1
}

// checkProcs checks that every rule matches a process of the app and that
// every process of the app matches a rule (the longest matching prefix),
// with that rule's uid and gid.
func checkProcs(t *testing.T, c *corpusMachine, rules []procRule) []machineProc {
	t.Helper()
	procs := machineProcs(t, c.show(t).State.Leader)
	seen := make([]bool, len(rules))
	for _, p := range procs {
		best := -1
		for i, r := range rules {
			if strings.HasPrefix(p.cmdline, r.cmdline) && (best < 0 || len(r.cmdline) > len(rules[best].cmdline)) {
				best = i
			}
		}
		if best < 0 {
			t.Errorf("process %d %q (uid %d) is not one the app should run", p.pid, p.cmdline, p.uid)
			continue
		}
		seen[best] = true
		if r := rules[best]; p.uid != r.uid || p.gid != r.gid {
			t.Errorf("process %d %q runs as %d:%d in the machine, want %d:%d", p.pid, p.cmdline, p.uid, p.gid, r.uid, r.gid)
		}
	}
	for i, r := range rules {
		if !seen[i] {
			t.Errorf("no process %q in the machine; it has:\n%s", r.cmdline, describeProcs(procs))
		}
	}
	return procs
}

func describeProcs(procs []machineProc) string {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "  %d %d:%d %s\n", p.pid, p.uid, p.gid, p.cmdline)
	}
	return b.String()
}

// ownerOf returns the owner of path on the host.
func ownerOf(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%v", err)
		return -1, -1
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// psqlPath finds Debian's psql (postgresql-client-NN): the real binary,
// not the perl wrapper /usr/bin/psql.
func psqlPath(t *testing.T) string {
	t.Helper()
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(found) == 0 {
		ci.Skip(t, "no psql in /usr/lib/postgresql/*/bin (Debian package postgresql-client; scripts/install-deps.sh)")
	}
	return found[len(found)-1]
}
