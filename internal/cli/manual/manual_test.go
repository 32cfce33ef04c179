package manual

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli"
	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/testbed/ci"
)

func newRoot() *cobra.Command {
	ios, _, _, _ := iostreams.Test()
	return cli.NewRootCmd(&cli.Factory{IO: ios, Getenv: func(string) string { return "" }})
}

// writePages writes the pages of the current command tree into a temp dir.
func writePages(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	pages, err := Write(dir, newRoot(), Options{Date: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	return dir, pages
}

// The pages are the command tree's: one per command, nothing else in the
// dir, each with its name, synopsis and examples.
func TestPagesFollowTheCommandTree(t *testing.T) {
	dir, pages := writePages(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if diff := cmp.Diff(pages, files); diff != "" {
		t.Errorf("files in the dir differ from the pages Write reported (-reported +files):\n%s", diff)
	}
	root := newRoot()
	for _, want := range []string{"mbctl.1", "mbctl-machines-pull.1", "mbctl-host-check.1", "mbctl-completion-bash.1", "mbctl.toml.5", "man8env.env.5", "man8s.nspawn.5"} {
		if !slices.Contains(pages, want) {
			t.Errorf("no page %s among %v", want, pages)
		}
	}
	for _, c := range commands(root) {
		page := manText(t, dir, pageName(c))
		for _, want := range []string{"NAME " + strings.ReplaceAll(c.CommandPath(), " ", "-") + " - ", "SYNOPSIS " + c.UseLine(), "Dec 2026"} {
			if !strings.Contains(page, want) {
				t.Errorf("%s: no %q in\n%s", pageName(c), want, page)
			}
		}
		if c.Example == "" {
			continue
		}
		first := strings.Join(strings.Fields(strings.SplitN(strings.TrimSpace(c.Example), "\n", 2)[0]), " ")
		if !strings.Contains(page, "EXAMPLE "+first) {
			t.Errorf("%s: the example %q is missing", pageName(c), first)
		}
	}
	for _, c := range root.Commands() {
		if c.Hidden && slices.Contains(pages, pageName(c)) {
			t.Errorf("hidden command %s has a page", c.Name())
		}
	}
}

// manText is the page as man shows it, on one line: its words separated
// by single spaces (no hyphenation, no line breaks).
func manText(t *testing.T, dir, name string) string {
	t.Helper()
	cmd := exec.Command("man", "--nh", "--nj", "-l", filepath.Join(dir, name))
	cmd.Env = append(os.Environ(), "MANWIDTH=10000", "MANPAGER=cat", "PAGER=cat", "MAN_KEEP_FORMATTING=")
	out, err := cmd.Output()
	if err != nil {
		ci.Skip(t, "man -l %s: %v (install man-db)", name, err)
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

// The man(5) pages name every key of the formats they describe: a key
// added to the configuration, to man8env or to the settings mbctl writes
// fails here until the page says what it is.
func TestFilePagesNameEveryKey(t *testing.T) {
	dir, _ := writePages(t)
	text := func(name string) string { return manText(t, dir, name) }
	toml := text("mbctl.toml.5")
	for _, e := range config.Entries(config.Default(), config.Origin{}) {
		if !strings.Contains(toml, e.Dotted()) {
			t.Errorf("mbctl.toml(5) does not describe %s", e.Dotted())
		}
	}
	env := text("man8env.env.5")
	for _, k := range append(man8env.UserKeys(), contractKeys(t)...) {
		if !strings.Contains(env, k+" ") {
			t.Errorf("man8env.env(5) does not describe %s", k)
		}
	}
	settings := text("man8s.nspawn.5")
	for _, k := range generatedSettingsKeys(t) {
		if !strings.Contains(settings, k+"=") {
			t.Errorf("man8s.nspawn(5) does not describe %s=, which machines pull writes", k)
		}
	}
}

// contractKeys reads the MAN8S_ constants of the man8env package's source.
func contractKeys(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../format/man8env/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("man8env's source: %v", err)
	}
	re := regexp.MustCompile(`(?m)^\s+Key\w+\s+= "(MAN8S_\w+)"`)
	var keys []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			keys = append(keys, m[1])
		}
	}
	if len(keys) < 20 {
		t.Fatalf("found only %d MAN8S_ keys in %v", len(keys), files)
	}
	return keys
}

// generatedSettingsKeys are the keys of the settings files machinefiles'
// golden tests generate.
func generatedSettingsKeys(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../host/provision/machinefiles/testdata/*.nspawn.golden")
	if err != nil || len(files) == 0 {
		t.Fatalf("machinefiles' golden settings: %v", err)
	}
	var keys []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := sc.Text()
			if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		fh.Close()
	}
	return keys
}

// Every page is clean roff: groff finds nothing to warn about.
func TestPagesFormatWithoutWarnings(t *testing.T) {
	dir, pages := writePages(t)
	if _, err := exec.LookPath("groff"); err != nil {
		ci.Skip(t, "no groff (install man-db)")
	}
	for _, p := range pages {
		out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", filepath.Join(dir, p)).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", p, err, out)
		}
	}
}

func TestPlainMarkdown(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a <NAME> and *b*", `a \<NAME> and \*b\*`},
		{"keep `a_b <c>` as code", "keep `a_b <c>` as code"},
		{"text:\n  col1  col2\n  x     y\nmore", "text:\n\n```\n  col1  col2\n  x     y\n```\n\nmore"},
		{"- not a list\n1. not a number", `\- not a list` + "\n" + `1\. not a number`},
		{"an odd ` backquote", "an odd \\` backquote"},
	} {
		if got := plainMarkdown(tt.in); got != tt.want {
			t.Errorf("plainMarkdown(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriteNeedsADate(t *testing.T) {
	if _, err := Write(t.TempDir(), newRoot(), Options{}); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("Write without a date: %v", err)
	}
}
