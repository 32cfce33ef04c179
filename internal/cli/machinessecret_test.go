package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/secret"
)

// secretValue marks values in these tests: it must never show in output.
const secretValue = "s3cr3t-Zq9"

func TestNewCmdMachinesSecret(t *testing.T) {
	run := func(t *testing.T, cmd *cobra.Command, args ...string) error {
		t.Helper()
		cmd.SetArgs(args)
		cmd.SetOut(&strings.Builder{})
		cmd.SetErr(&strings.Builder{})
		return cmd.Execute()
	}
	ignore := cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober")
	t.Run("set", func(t *testing.T) {
		var got *MachinesSecretSetOptions
		if err := run(t, NewCmdMachinesSecretSet(testFactory(t), func(_ context.Context, o *MachinesSecretSetOptions) error { got = o; return nil }), "web", "DB_PASSWORD", "--allow-empty"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&MachinesSecretSetOptions{Name: "web", Key: "DB_PASSWORD", AllowEmpty: true}, got, ignore, cmpopts.IgnoreFields(MachinesSecretSetOptions{}, "ReadHidden")); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("list", func(t *testing.T) {
		var got *MachinesSecretListOptions
		if err := run(t, NewCmdMachinesSecretList(testFactory(t), func(_ context.Context, o *MachinesSecretListOptions) error { got = o; return nil }), "--json", "web"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&MachinesSecretListOptions{Name: "web", JSON: true}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("remove", func(t *testing.T) {
		var got *MachinesSecretRemoveOptions
		if err := run(t, NewCmdMachinesSecretRemove(testFactory(t), func(_ context.Context, o *MachinesSecretRemoveOptions) error { got = o; return nil }), "web", "A", "B"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&MachinesSecretRemoveOptions{Name: "web", Keys: []string{"A", "B"}}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"machines", "secret", "set", "web"}, "takes 2 arguments: NAME KEY"},
			{[]string{"machines", "secret", "rm", "web"}, "takes 2 or more arguments: NAME KEY..."},
			{[]string{"machines", "secret", "list"}, "takes 1 argument: NAME"},
			{[]string{"machines", "secret", "bogus"}, `unknown verb "bogus"`},
		} {
			code, _, stderr := runCLI(t, noConfig(t, ""), tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("%v: %d %q, want usage error %q", tt.args, code, stderr, tt.want)
			}
		}
	})
}

func TestMachinesSecretSetRun(t *testing.T) {
	tests := []struct {
		name       string
		key        string
		stdin      string
		tty        bool
		typed      string
		allowEmpty bool
		wantErr    string
		wantValue  string
		wantPrompt bool
	}{
		{name: "from stdin, one newline dropped", key: "DB_PASSWORD", stdin: secretValue + "\n\n", wantValue: secretValue + "\n"},
		{name: "from stdin as is", key: "DB_PASSWORD", stdin: secretValue, wantValue: secretValue},
		{name: "no terminal, nothing on stdin", key: "DB_PASSWORD", wantErr: "standard input is empty and not a terminal to ask on; pipe the value in"},
		{name: "only a newline is empty too", key: "DB_PASSWORD", stdin: "\n", wantErr: "or pass --allow-empty"},
		{name: "empty allowed", key: "DB_PASSWORD", allowEmpty: true},
		{name: "typed on the terminal", key: "TOKEN", tty: true, typed: secretValue, wantValue: secretValue, wantPrompt: true},
		{name: "nothing typed", key: "TOKEN", tty: true, wantErr: "nothing was typed (pass --allow-empty", wantPrompt: true},
		{name: "bad key", key: "DB-PASSWORD", stdin: secretValue, wantErr: `secret name "DB-PASSWORD": not an environment variable name`},
		{name: "MAN8S_ key", key: "MAN8S_STOP_SIGNAL", stdin: secretValue, wantErr: "MAN8S_ names are Man8S's own"},
		{name: "too big", key: "BIG", stdin: strings.Repeat("x", 64<<10+1) + "\n", wantErr: "larger than the limit"},
		{name: "a NUL", key: "NUL", stdin: secretValue + "\x00", wantErr: "NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, out, errOut := testMachineDeps(t)
			p := completeMachine(t, d)
			d.IO.In = strings.NewReader(tt.stdin)
			d.IO.SetStdinTTY(tt.tty)
			read := func(context.Context) ([]byte, error) {
				if !tt.tty {
					t.Error("asked on a terminal without one")
				}
				return []byte(tt.typed), nil
			}
			err := machinesSecretSetRun(t.Context(), &MachinesSecretSetOptions{MachineDeps: d, ReadHidden: read, Name: "web", Key: tt.key, AllowEmpty: tt.allowEmpty})
			all := out.String() + errOut.String()
			if err != nil {
				all += err.Error()
			}
			if strings.Contains(all, secretValue) {
				t.Errorf("the value shows in the output:\n%s", all)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if ents, _ := os.ReadDir(filepath.Join(p.ConfigDir, secret.DirName)); len(ents) != 0 {
					t.Errorf("a refused set stored %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(p.ConfigDir, secret.DirName, tt.key))
			if err != nil || string(got) != tt.wantValue {
				t.Errorf("stored %q (%v), want %q", got, err, tt.wantValue)
			}
			if want := "Set secret " + tt.key + " of machine web"; !strings.Contains(out.String(), want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
			if tt.wantPrompt != strings.Contains(errOut.String(), "Value of secret "+tt.key+" of machine web (input hidden): ") {
				t.Errorf("prompt %v, stderr:\n%s", tt.wantPrompt, errOut)
			}
			if want := "+BindReadOnly=" + p.ConfigDir + "/secrets:/run/secrets:idmap"; !strings.Contains(errOut.String(), want) {
				t.Errorf("stderr does not show the line added to the settings %q:\n%s", want, errOut)
			}
		})
	}
}

func TestMachinesSecretSetTwice(t *testing.T) {
	d, _, out, errOut := testMachineDeps(t)
	p := completeMachine(t, d)
	for _, v := range []string{"one", "two"} {
		d.IO.In = strings.NewReader(v)
		if err := machinesSecretSetRun(t.Context(), &MachinesSecretSetOptions{MachineDeps: d, Name: "web", Key: "TOKEN"}); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(out.String(), "Replaced secret TOKEN of machine web") || strings.Count(errOut.String(), "BindReadOnly") != 1 {
		t.Errorf("second set: stdout %q, stderr %q", out, errOut)
	}
	settings, _ := os.ReadFile(p.Settings)
	if strings.Count(string(settings), "/run/secrets") != 1 {
		t.Errorf("settings:\n%s", settings)
	}
}

func TestMachinesSecretMissingMachine(t *testing.T) {
	d, _, _, _ := testMachineDeps(t)
	d.IO.In = strings.NewReader(secretValue)
	err := machinesSecretSetRun(t.Context(), &MachinesSecretSetOptions{MachineDeps: d, Name: "nope", Key: "TOKEN"})
	if err == nil || err.Error() != "machine nope does not exist (see 'mbctl machines list')" {
		t.Errorf("set: %v", err)
	}
	if b, _ := d.IO.In.(*strings.Reader); b.Len() != len(secretValue) {
		t.Error("the value was read before the machine was found missing")
	}
	if err := machinesSecretListRun(t.Context(), &MachinesSecretListOptions{MachineDeps: d, Name: "nope"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("list: %v", err)
	}
	if err := machinesSecretRemoveRun(t.Context(), &MachinesSecretRemoveOptions{MachineDeps: d, Name: "nope", Keys: []string{"A"}}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("rm: %v", err)
	}
}

func TestMachinesSecretListRemoveShow(t *testing.T) {
	d, _, out, errOut := testMachineDeps(t)
	p := completeMachine(t, d)

	if err := machinesSecretListRun(t.Context(), &MachinesSecretListOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "Machine web has no secrets. Set one with 'mbctl machines secret set web KEY'.") {
		t.Errorf("list of none: %q %q", out, errOut)
	}
	out.Reset()
	if err := machinesSecretListRun(t.Context(), &MachinesSecretListOptions{MachineDeps: d, Name: "web", JSON: true}); err != nil || strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("list --json of none: %q %v", out, err)
	}

	for _, k := range []string{"TOKEN", "DB_PASSWORD"} {
		d.IO.In = strings.NewReader(secretValue)
		if err := machinesSecretSetRun(t.Context(), &MachinesSecretSetOptions{MachineDeps: d, Name: "web", Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := machinesSecretListRun(t.Context(), &MachinesSecretListOptions{MachineDeps: d, Name: "web", JSON: true}); err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0]["name"] != "DB_PASSWORD" || list[0]["size"] != float64(len(secretValue)) || list[1]["name"] != "TOKEN" || list[1]["modified"] == "" {
		t.Errorf("list --json = %v", list)
	}
	out.Reset()
	if err := machinesSecretListRun(t.Context(), &MachinesSecretListOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "DB_PASSWORD  10 B") || !strings.HasPrefix(lines[2], "TOKEN") {
		t.Errorf("list:\n%s", out)
	}

	// show names them, in text and JSON.
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Secrets:\s+DB_PASSWORD, TOKEN$`).MatchString(out.String()) {
		t.Errorf("show lacks the Secrets row:\n%s", out)
	}
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web", JSON: true}); err != nil {
		t.Fatal(err)
	}
	var show struct {
		Secrets []string `json:"secrets"`
	}
	if err := json.Unmarshal(out.Bytes(), &show); err != nil || !cmp.Equal(show.Secrets, []string{"DB_PASSWORD", "TOKEN"}) {
		t.Errorf("show --json secrets = %v (%v)", show.Secrets, err)
	}

	// rm: a missing key is an error naming it, and nothing goes.
	out.Reset()
	err := machinesSecretRemoveRun(t.Context(), &MachinesSecretRemoveOptions{MachineDeps: d, Name: "web", Keys: []string{"TOKEN", "NOPE"}})
	if !errors.Is(err, secret.ErrNotFound) || !strings.Contains(err.Error(), "machine web has no secret NOPE") || strings.Contains(err.Error(), "TOKEN") {
		t.Errorf("rm of a missing key: %v", err)
	}
	if err := machinesSecretRemoveRun(t.Context(), &MachinesSecretRemoveOptions{MachineDeps: d, Name: "web", Keys: []string{"TOKEN", "DB_PASSWORD"}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Removed secrets TOKEN, DB_PASSWORD of machine web.") {
		t.Errorf("rm: %q", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(p.ConfigDir, secret.DirName)); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web", JSON: true}); err != nil || !strings.Contains(out.String(), `"secrets": []`) {
		t.Errorf("show --json without secrets: %v\n%s", err, out)
	}
	if all := out.String() + errOut.String(); strings.Contains(all, secretValue) {
		t.Errorf("the value shows in the output:\n%s", all)
	}
}

// The whole command line: exit status 1 and the error naming the key for
// rm of a missing secret.
func TestMachinesSecretRemoveMissingExitStatus(t *testing.T) {
	env, root := machineDirs(t)
	writeTestFile(t, filepath.Join(root, "configs/web/container.nspawn"), "[Exec]\nBoot=no\n")
	code, _, stderr := runCLI(t, env, "machines", "secret", "rm", "web", "GONE")
	if code != exitError || !strings.Contains(stderr, "mbctl: machine web has no secret GONE") {
		t.Errorf("rm of a missing secret: %d %q", code, stderr)
	}
}
