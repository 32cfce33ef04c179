package cli

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/format/nspawnport"
)

func TestNewCmdMachinesPublish(t *testing.T) {
	run := func(t *testing.T, cmd *cobra.Command, args ...string) error {
		t.Helper()
		cmd.SetArgs(args)
		cmd.SetOut(&strings.Builder{})
		cmd.SetErr(&strings.Builder{})
		return cmd.Execute()
	}
	ignore := cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober")
	var got *MachinesPublishOptions
	if err := run(t, NewCmdMachinesPublish(testFactory(t), func(_ context.Context, o *MachinesPublishOptions) error { got = o; return nil }), "web", "8080:80", "53/udp", "--json"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&MachinesPublishOptions{Name: "web", Specs: []string{"8080:80", "53/udp"}, JSON: true}, got, ignore); diff != "" {
		t.Error(diff)
	}
	if err := run(t, NewCmdMachinesUnpublish(testFactory(t), func(_ context.Context, o *MachinesPublishOptions) error { got = o; return nil }), "web", "--all"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&MachinesPublishOptions{Name: "web", Specs: []string{}, All: true}, got, ignore); diff != "" {
		t.Error(diff)
	}
	var pull *MachinesPullOptions
	if err := run(t, NewCmdMachinesPull(testFactory(t), func(_ context.Context, o *MachinesPullOptions) error { pull = o; return nil }), "nginx", "web", "--publish", "8080:80", "-p", "53/udp"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"8080:80", "53/udp"}, pull.Publish); diff != "" {
		t.Error(diff)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"machines", "publish", "web"}, "takes NAME and one or more HOSTPORT[:PORT][/tcp|udp]"},
		{[]string{"machines", "unpublish", "web"}, "which ports?"},
		{[]string{"machines", "unpublish", "web", "80", "--all"}, "--all or ports, not both"},
	} {
		code, _, stderr := runCLI(t, noConfig(t, ""), tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: %d %q, want usage error %q", tt.args, code, stderr, tt.want)
		}
	}
}

func TestMachinesPublishRun(t *testing.T) {
	d, _, out, errOut := testMachineDeps(t)
	p := completeMachine(t, d)
	before, err := os.ReadFile(p.Settings)
	if err != nil {
		t.Fatal(err)
	}
	opts := &MachinesPublishOptions{MachineDeps: d, Name: "web", Specs: []string{"8080:80", "5353:53/udp"}}
	if err := machinesPublishRun(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Published port 80/tcp of machine web on the host's port 8080/tcp (Port=tcp:8080:80).",
		"Published port 53/udp of machine web on the host's port 5353/udp (Port=udp:5353:53).",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut.String(), "Changed "+p.Settings) {
		t.Errorf("stderr: %s", errOut)
	}
	after, _ := os.ReadFile(p.Settings)
	if want := string(before) + "\n[Network]\nPort=tcp:8080:80\nPort=udp:5353:53\n"; string(after) != want {
		t.Errorf("settings:\n%s\nwant:\n%s", after, want)
	}

	// Again, as JSON: nothing new.
	out.Reset()
	opts.JSON, opts.Specs = true, []string{"8080:80"}
	if err := machinesPublishRun(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	var rep publishReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Added) != 0 || len(rep.Present) != 1 || len(rep.Ports) != 2 || rep.Running {
		t.Errorf("report: %+v", rep)
	}

	// A bad spec is a usage error naming it.
	opts.JSON, opts.Specs = false, []string{"198.18.0.1:8080:80"}
	if err := machinesPublishRun(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "a host address (198.18.0.1) cannot be given") {
		t.Errorf("host address: %v", err)
	}

	// machines show lists them, in text and JSON.
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Published:    8080 -> 80/tcp, 5353 -> 53/udp") {
		t.Errorf("show:\n%s", out)
	}
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web", JSON: true}); err != nil {
		t.Fatal(err)
	}
	var show struct {
		Published []nspawnport.Port `json:"published_ports"`
	}
	if err := json.Unmarshal(out.Bytes(), &show); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]nspawnport.Port{{Protocol: "tcp", Host: 8080, Container: 80}, {Protocol: "udp", Host: 5353, Container: 53}}, show.Published); diff != "" {
		t.Errorf("show --json published_ports (-want +got):\n%s", diff)
	}

	// Unpublish one that is not there: named, nothing removed.
	out.Reset()
	un := &MachinesPublishOptions{MachineDeps: d, Name: "web", Specs: []string{"8080", "9999"}}
	if err := machinesUnpublishRun(t.Context(), un); err == nil || !strings.Contains(err.Error(), "does not publish 9999/tcp") {
		t.Errorf("unpublish 9999: %v", err)
	}
	un.Specs = []string{"8080"}
	if err := machinesUnpublishRun(t.Context(), un); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Unpublished host port 8080/tcp of machine web (was Port=tcp:8080:80).") {
		t.Errorf("unpublish output:\n%s", out)
	}
	un.Specs, un.All = nil, true
	if err := machinesUnpublishRun(t.Context(), un); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(p.Settings); string(after) != string(before)+"\n[Network]\n" {
		t.Errorf("settings after unpublish --all:\n%s", after)
	}
}
