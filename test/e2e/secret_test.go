package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// secretApp prints what it sees of its secrets, as hashes only: the
// variables, the file under /run/secrets, the modes and owners there, and
// whether it can write there.
const secretApp = `h() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
echo "env DB_PASSWORD ${DB_PASSWORD+set} $(h "$DB_PASSWORD")"
echo "env API_TOKEN $(h "$API_TOKEN")"
echo "file DB_PASSWORD $(sha256sum < /run/secrets/DB_PASSWORD | cut -d' ' -f1)"
echo "modes $(stat -c '%a:%u' /run/secrets /run/secrets/DB_PASSWORD | tr '\n' ' ')"
if touch /run/secrets/new 2>/dev/null; then echo "secrets writable"; else echo "secrets read-only"; fi
echo app ready
trap 'exit 0' TERM
while true; do sleep 0.1; done`

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Proof (issue 13, secrets): a machine pulled without secrets gets two,
// one piped in (with a newline, quotes and a '$' inside), one typed on a
// terminal without echo; the first set binds the secrets dir into the
// machine's settings. Under real systemd-nspawn the app sees both as
// variables (the secret winning over the image's value in man8env.env) and
// the first as the read-only file /run/secrets/DB_PASSWORD, root's, mode
// 0600. A secret set while the machine runs shows in /run/secrets at once.
// No value appears in any output of mbctl: set, secret list, show, list
// (text and --json), the machine's own log, errors.
func TestSecretReachesTheApp(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/secret:1"
	script, err := ociimage.Layer(ociimage.File("app.sh", []byte(secretApp), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	app, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "/app.sh"},
		Env:        []string{ociimage.DefaultPath, "API_TOKEN=from-the-image"},
	}, script)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, app, ref)
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "sec1")
	settings := filepath.Join(m.work, "configs/sec1/container.nspawn")
	if strings.Contains(readFileT(t, settings), "/run/secrets") {
		t.Fatalf("a new machine's settings already bind /run/secrets:\n%s", readFileT(t, settings))
	}

	mark := randomHex(t)
	password := "p@ss w0rd\n$HOME 'q' \"d\" \\ " + mark
	token := "tok" + randomHex(t)
	var outputs strings.Builder // every output of mbctl, searched for the values at the end
	record := func(what, out string) string {
		outputs.WriteString("== " + what + "\n" + out + "\n")
		return out
	}

	// Piped in: one trailing newline is dropped, the rest is the value.
	set := m.mbctl(t.Context(), "machines", "secret", "set", "sec1", "DB_PASSWORD")
	set.Stdin = strings.NewReader(password + "\n")
	out, err := set.CombinedOutput()
	record("secret set DB_PASSWORD", string(out))
	if err != nil {
		t.Fatalf("secret set: %v\n%s", err, out)
	}
	bind := "BindReadOnly=" + filepath.Join(m.work, "configs/sec1/secrets") + ":/run/secrets:idmap"
	if !strings.Contains(string(out), "+"+bind) || !strings.Contains(string(out), "Set secret DB_PASSWORD of machine sec1") {
		t.Errorf("first secret set does not show the bind it added:\n%s", out)
	}
	if got := readFileT(t, settings); strings.Count(got, bind) != 1 {
		t.Errorf("settings after the first set:\n%s", got)
	}

	// Typed on a terminal: asked for, never echoed.
	term := openTerminal(t)
	done := term.start(t, m.mbctl(t.Context(), "machines", "secret", "set", "sec1", "API_TOKEN"))
	term.expect(t, "Value of secret API_TOKEN of machine sec1 (input hidden): ")
	term.typeLine(t, token)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("secret set on a terminal: %v\n%s", err, term.output())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("secret set on a terminal did not end:\n%s", term.output())
	}
	term.expect(t, "Set secret API_TOKEN of machine sec1")
	record("secret set API_TOKEN (terminal)", term.output())

	// Ctrl-C at the prompt: nothing is set, and the terminal echoes again.
	term = openTerminal(t)
	done = term.start(t, m.mbctl(t.Context(), "machines", "secret", "set", "sec1", "CANCELLED"))
	term.expect(t, "(input hidden): ")
	if _, err := term.master.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("secret set ended by Ctrl-C succeeded:\n%s", term.output())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("Ctrl-C did not end secret set:\n%s", term.output())
	}
	record("secret set CANCELLED (Ctrl-C)", term.output())
	if tio, err := unix.IoctlGetTermios(int(term.master.Fd()), unix.TCGETS); err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("after Ctrl-C at the prompt the terminal does not echo (%v):\n%s", err, term.output())
	}
	if _, err := os.Lstat(filepath.Join(m.work, "configs/sec1/secrets/CANCELLED")); err == nil {
		t.Error("the cancelled secret was stored")
	}

	// On the host: the dir is 0700, the files 0600, apart from man8env.env.
	dir := filepath.Join(m.work, "configs/sec1/secrets")
	for path, want := range map[string]fs.FileMode{dir: fs.ModeDir | 0o700, filepath.Join(dir, "DB_PASSWORD"): 0o600, filepath.Join(dir, "API_TOKEN"): 0o600} {
		if fi, err := os.Lstat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v (%v), want %v", path, fi.Mode(), err, want)
		}
	}
	if got := readFileT(t, filepath.Join(dir, "DB_PASSWORD")); got != password {
		t.Errorf("stored DB_PASSWORD is not the value piped in less its newline")
	}
	if env := readFileT(t, filepath.Join(m.work, "configs/sec1/man8env.env")); strings.Contains(env, mark) || strings.Contains(env, token) {
		t.Error("a secret's value is in man8env.env")
	}

	list := record("secret list", m.mustMbctl(t, "machines", "secret", "list", "sec1"))
	if !regexpMatch(`(?m)^API_TOKEN\s+\d+ B\s+\S+`, list) || !regexpMatch(`(?m)^DB_PASSWORD\s+`+strconv.Itoa(len(password))+" B", list) {
		t.Errorf("secret list:\n%s", list)
	}
	var secrets []struct {
		Name string `json:"name"`
		Size int    `json:"size"`
	}
	if err := json.Unmarshal([]byte(record("secret list --json", m.mustMbctl(t, "machines", "secret", "list", "--json", "sec1"))), &secrets); err != nil ||
		len(secrets) != 2 || secrets[0].Name != "API_TOKEN" || secrets[1].Name != "DB_PASSWORD" || secrets[1].Size != len(password) {
		t.Errorf("secret list --json: %+v (%v)", secrets, err)
	}
	show := record("show", m.mustMbctl(t, "machines", "show", "sec1"))
	if !regexpMatch(`(?m)^Secrets:\s+API_TOKEN, DB_PASSWORD$`, show) {
		t.Errorf("show lacks the secrets:\n%s", show)
	}
	var showJSON struct {
		Secrets []string `json:"secrets"`
	}
	if err := json.Unmarshal([]byte(record("show --json", m.mustMbctl(t, "machines", "show", "--json", "sec1"))), &showJSON); err != nil ||
		strings.Join(showJSON.Secrets, " ") != "API_TOKEN DB_PASSWORD" {
		t.Errorf("show --json secrets: %v (%v)", showJSON.Secrets, err)
	}
	record("list", m.mustMbctl(t, "machines", "list"))
	record("list --json", m.mustMbctl(t, "machines", "list", "--json"))
	record("check", m.mustMbctl(t, "machines", "check", "sec1"))

	// The app, under systemd-nspawn.
	run := m.startRun(t, "sec1")
	waitFor(t, "the app to report", func() bool { return strings.Contains(run.output(), "app ready") })
	for _, want := range []string{
		"env DB_PASSWORD set " + sha256Hex(password),
		"env API_TOKEN " + sha256Hex(token),
		"file DB_PASSWORD " + sha256Hex(password),
		"modes 700:0 600:0 ",
		"secrets read-only",
		"man8s-init: secrets: 2 added to the app's environment from /run/secrets: API_TOKEN DB_PASSWORD",
		"man8s-init: secrets: override man8env.env's value of: API_TOKEN",
	} {
		if !strings.Contains(run.output(), want) {
			t.Errorf("the machine's output lacks %q:\n%s", want, run.output())
		}
	}

	// Set while it runs: the file shows at once, the variable at the next
	// start, and mbctl says so.
	set = m.mbctl(t.Context(), "machines", "secret", "set", "sec1", "LATE")
	set.Stdin = strings.NewReader(mark)
	out, err = set.CombinedOutput()
	record("secret set LATE (running)", string(out))
	if err != nil || !strings.Contains(string(out), "Machine sec1 is running: its app gets the secret at its next start") || strings.Contains(string(out), "BindReadOnly") {
		t.Errorf("secret set of a running machine: %v\n%s", err, out)
	}
	if got := m.mustMbctl(t, "machines", "shell", "sec1", "--", "sha256sum", "/run/secrets/LATE"); !strings.HasPrefix(got, sha256Hex(mark)) {
		t.Errorf("the secret set while running is not in /run/secrets: %q", got)
	}
	record("show (running)", m.mustMbctl(t, "machines", "show", "sec1"))
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}
	record("machines run", run.output())

	// rm: a missing key is an error naming it; then all of them.
	out, err = m.mbctl(t.Context(), "machines", "secret", "rm", "sec1", "LATE", "NOPE").CombinedOutput()
	record("secret rm NOPE", string(out))
	if err == nil || !strings.Contains(string(out), "machine sec1 has no secret NOPE") {
		t.Errorf("secret rm of a missing key: %v\n%s", err, out)
	}
	record("secret rm", m.mustMbctl(t, "machines", "secret", "rm", "sec1", "LATE", "API_TOKEN", "DB_PASSWORD"))
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("secret rm left %v", ents)
	}
	record("secret list (none)", m.mustMbctl(t, "machines", "secret", "list", "sec1"))

	all := outputs.String()
	for what, v := range map[string]string{"DB_PASSWORD": mark, "API_TOKEN": token} {
		if strings.Contains(all, v) {
			t.Errorf("the value of %s appears in mbctl's output:\n%s", what, all)
		}
	}
}
