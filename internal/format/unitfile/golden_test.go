package unitfile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// editSequence is what mbctl might do to a user's settings file.
func editSequence(t *testing.T, f *File) {
	t.Helper()
	env, err := QuoteEnvironment("GREETING", `hello "world" $HOME 100% C:\`)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op                  string
		section, key, value string
	}{
		{"set", "Exec", "Parameters", "/man8s-init/man8s-init --verbose"},
		{"set", "Exec", "KillSignal", "SIGRTMIN+3"},
		{"add", "Exec", "Environment", env},
		{"set", "Network", "Bridge", "srvgrp1"},
		{"unset", "Files", "BindReadOnly", ""},
		{"add", "Files", "Bind", "/srv/new:/data:idmap"},
		{"set", "Files", "PrivateUsersOwnership", "map"},
		{"set", "X-Man8S", "Template", "network_isolated"},
	}
	for _, s := range steps {
		var err error
		switch s.op {
		case "set":
			err = f.Set(s.section, s.key, s.value)
		case "add":
			err = f.Add(s.section, s.key, s.value)
		case "unset":
			f.Unset(s.section, s.key)
		}
		if err != nil {
			t.Fatalf("%s [%s] %s: %v", s.op, s.section, s.key, err)
		}
	}
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.nspawn"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.nspawn files")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			f := mustParse(t, string(data))
			if got := f.Bytes(); string(got) != string(data) {
				t.Fatalf("untouched round trip differs:\n%s", cmp.Diff(string(data), string(got)))
			}

			editSequence(t, f)
			got := f.Bytes()
			golden := strings.TrimSuffix(in, ".nspawn") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("edited %s mismatch (-golden +got):\n%s", in, diff)
			}

			// The edited file means what the edits said.
			g := mustParse(t, string(got))
			for _, c := range []struct{ section, key, want string }{
				{"Exec", "Parameters", "/man8s-init/man8s-init --verbose"},
				{"Exec", "KillSignal", "SIGRTMIN+3"},
				{"Network", "Bridge", "srvgrp1"},
				{"Files", "PrivateUsersOwnership", "map"},
				{"X-Man8S", "Template", "network_isolated"},
			} {
				if v, _ := g.Get(c.section, c.key); v != c.want {
					t.Errorf("[%s] %s = %q, want %q", c.section, c.key, v, c.want)
				}
			}
			if all := g.GetAll("Files", "BindReadOnly"); len(all) != 0 {
				t.Errorf("BindReadOnly = %q after Unset", all)
			}
			binds := g.GetAll("Files", "Bind")
			if len(binds) == 0 || binds[len(binds)-1] != "/srv/new:/data:idmap" {
				t.Errorf("Bind = %q, want the new bind last", binds)
			}
			envs := g.GetAll("Exec", "Environment")
			if len(envs) == 0 {
				t.Fatal("no Environment= left")
			}
			words, err := ParseEnvironment(envs[len(envs)-1])
			if err != nil {
				t.Fatal(err)
			}
			if want := `GREETING=hello "world" $HOME 100% C:\`; len(words) != 1 || words[0] != want {
				t.Errorf("last Environment= parses to %q, want %q", words, want)
			}
		})
	}
}

// TestDesignTemplate pins down how the settings file shown in DESIGN.md
// reads: systemd has no end-of-line comments.
func TestDesignTemplate(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "design.nspawn"))
	if err != nil {
		t.Fatal(err)
	}
	f := mustParse(t, string(data))
	if diff := cmp.Diff([]string{"Exec", "Network", "Files"}, f.Sections()); diff != "" {
		t.Errorf("Sections() mismatch (-want +got):\n%s", diff)
	}
	v, _ := f.Get("Exec", "KillSignal")
	if want := `SIGRTMIN+3          # see "Init modes": without it, stopping the unit SIGKILLs everything`; v != want {
		t.Errorf("KillSignal = %q, want %q", v, want)
	}
	if got := f.GetAll("Files", "Bind"); len(got) != 2 {
		t.Errorf("Bind = %q, want two", got)
	}
}

func TestBitwardenExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bitwarden.nspawn"))
	if err != nil {
		t.Fatal(err)
	}
	f := mustParse(t, string(data))
	var env []string
	for _, v := range f.GetAll("Exec", "Environment") {
		words, err := ParseEnvironment(v)
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, words...)
	}
	want := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "TERM=xterm", "HOME=/root",
	}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("environment mismatch (-want +got):\n%s", diff)
	}
	if v, _ := f.Get("Exec", "WorkingDirectory"); v != "/app" {
		t.Errorf("WorkingDirectory = %q (trailing whitespace must be stripped)", v)
	}
	if v, _ := f.Get("Exec", "ResolvConf"); v != "copy-stub" {
		t.Errorf("ResolvConf = %q", v)
	}
	wantBinds := []string{
		"/var/lib/man8machine_configs/bitwarden/man8env.env:/man8env.env:idmap",
		"/var/lib/man8machine_storage/bitwarden/data:/data:idmap",
		"/srv/backup:/backup:idmap",
	}
	if diff := cmp.Diff(wantBinds, f.GetAll("Files", "Bind")); diff != "" {
		t.Errorf("Bind mismatch (-want +got):\n%s", diff)
	}
}
