package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/unit"
)

func TestNewCmdMachinesDependAndSet(t *testing.T) {
	run := func(t *testing.T, cmd *cobra.Command, args ...string) {
		t.Helper()
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
	}
	ignore := cmp.Options{cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober"),
		cmpopts.IgnoreFields(MachinesDependOptions{}, "Commands"), cmpopts.IgnoreFields(MachinesSetOptions{}, "Commands")}
	t.Run("depend", func(t *testing.T) {
		var got *MachinesDependOptions
		run(t, NewCmdMachinesDepend(testFactory(t), func(_ context.Context, o *MachinesDependOptions) error { got = o; return nil }),
			"app", "--on", "db", "--on", "cache", "--wants", "--json")
		if diff := cmp.Diff(&MachinesDependOptions{Name: "app", On: []string{"db", "cache"}, Wants: true, JSON: true}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("set", func(t *testing.T) {
		var got *MachinesSetOptions
		run(t, NewCmdMachinesSet(testFactory(t), func(_ context.Context, o *MachinesSetOptions) error { got = o; return nil }), "app", "--restart", "always")
		if diff := cmp.Diff(&MachinesSetOptions{Name: "app", Restart: "always"}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
}

// twoMachines makes machines web and db (and returns the drop-in dir).
func twoMachines(t *testing.T, d MachineDeps) string {
	t.Helper()
	completeMachine(t, d)
	db, _, _ := d.paths("db")
	writeTestFile(t, filepath.Join(db.Rootfs, "usr/bin/db"), "")
	cfg, _, _ := d.Config()
	return cfg.Paths.SystemdUnits
}

func TestMachinesDependRun(t *testing.T) {
	systemd := machine.HostInit{Systemd: true, Bus: true}
	reload := [][]string{{"systemctl", "daemon-reload"}}
	d, _, out, errOut := testMachineDeps(t)
	dir := twoMachines(t, d)
	cmds := &fakeCommands{host: systemd}
	if err := machinesDependRun(t.Context(), &MachinesDependOptions{MachineDeps: d, Commands: cmds, Name: "web", On: []string{"db"}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "systemd-nspawn@web.service.d/50-mbctl-depend-db.conf")
	if got, err := os.ReadFile(path); err != nil || !strings.Contains(string(got), "[Unit]\nAfter=systemd-nspawn@db.service\nRequires=systemd-nspawn@db.service\n") {
		t.Fatalf("drop-in %s: %v\n%s", path, err, got)
	}
	if want := "Wrote " + path + ": web starts after db and only with it (Requires=).\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if !cmp.Equal(cmds.ran, reload) {
		t.Errorf("ran %q, want %q", cmds.ran, reload)
	}

	// Again: nothing changes, systemd is not reloaded.
	cmds.ran = nil
	out.Reset()
	if err := machinesDependRun(t.Context(), &MachinesDependOptions{MachineDeps: d, Commands: cmds, Name: "web", On: []string{"db"}, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var res []machineDepend
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != 1 || res[0].Changed || res[0].Kind != unit.Requires || res[0].Path != path {
		t.Errorf("--json %v: %s", err, out)
	}
	if len(cmds.ran) != 0 {
		t.Errorf("ran %q for no change", cmds.ran)
	}

	// show lists the dependency both ways.
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if !regexpMatchT(`Depends on:\s+db \(requires\)`, out.String()) {
		t.Errorf("show web:\n%s", out)
	}
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "db", JSON: true}); err != nil {
		t.Fatal(err)
	}
	var show struct {
		DependsOn  []unit.Dependency `json:"depends_on"`
		Dependants []unit.Dependency `json:"dependants"`
	}
	if err := json.Unmarshal(out.Bytes(), &show); err != nil || len(show.DependsOn) != 0 || len(show.Dependants) != 1 || show.Dependants[0].Machine != "web" {
		t.Errorf("show db --json: %v %+v", err, show)
	}

	// Errors: a cycle, a missing machine, no --on; all before anything runs.
	cmds.ran = nil
	for _, tt := range []struct {
		o    MachinesDependOptions
		want string
	}{
		{MachinesDependOptions{Name: "db", On: []string{"web"}}, "machine web already depends on db (web -> db): db on web would make a cycle"},
		{MachinesDependOptions{Name: "web", On: []string{"nope"}}, "--on nope: machine nope does not exist"},
		{MachinesDependOptions{Name: "web"}, "name the machine it depends on with --on OTHER"},
		{MachinesDependOptions{Name: "web", On: []string{"db"}, Wants: true, Remove: true}, "do not go together"},
	} {
		tt.o.MachineDeps, tt.o.Commands = d, cmds
		if err := machinesDependRun(t.Context(), &tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want %q", tt.o, err, tt.want)
		}
	}
	if len(cmds.ran) != 0 {
		t.Errorf("ran %q after errors", cmds.ran)
	}

	// remove db warns about web, which depends on it.
	errOut.Reset()
	if err := machinesRemoveRun(t.Context(), &MachinesRemoveOptions{MachineDeps: d, Name: "db", Yes: true}); err != nil {
		t.Fatal(err)
	}
	if want := "warning: machine web depends on db and will not start without it (Requires=); after the removal run 'mbctl machines depend web --on db --remove'"; !strings.Contains(errOut.String(), want) {
		t.Errorf("remove db: stderr lacks %q:\n%s", want, errOut)
	}

	// --remove takes it away and reloads; without systemd nothing runs.
	cmds.ran = nil
	out.Reset()
	if err := machinesDependRun(t.Context(), &MachinesDependOptions{MachineDeps: d, Commands: cmds, Name: "web", On: []string{"db"}, Remove: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) || !cmp.Equal(cmds.ran, reload) || !strings.Contains(out.String(), "Removed "+path+": web no longer depends on db.") {
		t.Errorf("--remove: %v, ran %q, stdout %q", err, cmds.ran, out)
	}
}

func TestMachinesSetRun(t *testing.T) {
	d, _, out, errOut := testMachineDeps(t)
	dir := twoMachines(t, d)
	path := filepath.Join(dir, "systemd-nspawn@web.service.d/50-mbctl-restart.conf")
	for _, tt := range []struct {
		name    string
		host    machine.HostInit
		restart string
		wantRan [][]string
		wantOut string
		wantErr string
	}{
		{"on-failure under systemd", machine.HostInit{Systemd: true}, "on-failure", [][]string{{"systemctl", "daemon-reload"}}, "Wrote " + path + ": machine web restarts: on-failure.\n", ""},
		{"unchanged", machine.HostInit{Systemd: true}, "on-failure", nil, "Unchanged " + path + ": machine web restarts: on-failure.\n", ""},
		{"without systemd", machine.HostInit{}, "always", nil, "Wrote " + path + ": machine web restarts: always.\n", ""},
		{"bad policy", machine.HostInit{Systemd: true}, "sometimes", nil, "", "--restart: restart policy \"sometimes\": want no, on-failure, always"},
		{"nothing to set", machine.HostInit{Systemd: true}, "", nil, "", "say what to change, e.g. --restart on-failure"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out.Reset()
			errOut.Reset()
			cmds := &fakeCommands{host: tt.host}
			err := machinesSetRun(t.Context(), &MachinesSetOptions{MachineDeps: d, Commands: cmds, Name: "web", Restart: tt.restart})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.wantOut || !slices.EqualFunc(cmds.ran, tt.wantRan, slices.Equal) {
				t.Errorf("stdout %q ran %q; want %q %q", out, cmds.ran, tt.wantOut, tt.wantRan)
			}
			if !tt.host.Systemd && !strings.Contains(errOut.String(), "systemd is not PID 1 here") {
				t.Errorf("stderr %q", errOut)
			}
		})
	}
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if !regexpMatchT(`Restart:\s+always`, out.String()) {
		t.Errorf("show:\n%s", out)
	}

	// machines pull --restart: checked before anything is made, written after.
	if err := checkPullRestart("sometimes"); err == nil || !isUsage(err) {
		t.Errorf("checkPullRestart(sometimes) = %v, want a usage error", err)
	}
	cmds := &fakeCommands{host: machine.HostInit{Systemd: true}}
	if err := pullRestart(t.Context(), &MachinesPullOptions{IO: d.IO, Config: d.Config, Log: d.Log, Commands: cmds, Name: "db", Restart: "no"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "systemd-nspawn@db.service.d/50-mbctl-restart.conf")); !strings.Contains(string(got), "[Service]\nRestart=no\n") || len(cmds.ran) != 1 {
		t.Errorf("pull --restart no: %q, ran %q", got, cmds.ran)
	}

	// remove web deletes its drop-ins.
	errOut.Reset()
	if err := machinesRemoveRun(t.Context(), &MachinesRemoveOptions{MachineDeps: d, Name: "web", Yes: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) || !strings.Contains(errOut.String(), "Removed drop-in "+path) {
		t.Errorf("after remove: %v\n%s", err, errOut)
	}
}

func regexpMatchT(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}
