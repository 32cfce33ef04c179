package e2e

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// Proof (issue 3, generated files): systemd-nspawn accepts the generated
// container.nspawn as it is, comments included, and the machine runs the
// image's argv with its environment, working directory and volumes, also
// where host paths hold ':' and spaces (escaped in Bind=). The files of
// every template are run, with --private-network in place of their
// [Network] (TestTemplateMacvlan and TestTemplateHostNetwork run them
// with it).
func TestGeneratedFilesRunUnderNspawn(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	for _, tmpl := range man8env.Templates() {
		t.Run(tmpl, func(t *testing.T) { generatedFilesRun(t, tmpl) })
	}
}

func generatedFilesRun(t *testing.T, tmpl string) {
	const name = "m8s-gen-e2e"
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	if err := ociimage.Rootfs(rootfs, busybox); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "srv/app dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := initinstall.Install(rootfs, initinstall.Sources{Init: filepath.Join(bins.dir, "man8s-init"), Busybox: busybox}); err != nil {
		t.Fatal(err)
	}
	configs := filepath.Join(work, "configs: "+name)
	data := filepath.Join(work, "data:1 x")
	writeFile(t, filepath.Join(data, "f"), "volume content\n", 0o644)

	img := v1.Config{
		Env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/home/app", "GREETING=say \"hi\" to $HOME's * friends"},
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{`echo "pwd=$(pwd)"; echo "greeting=$GREETING"; echo "home=$HOME"; echo "arg=$0"; cat /data/f; exit 4`, "it's $0"},
		WorkingDir: "/srv/app dir",
	}
	d, err := imageinit.Detect(rootfs, append(img.Entrypoint, img.Cmd...))
	if err != nil {
		t.Fatal(err)
	}
	mode, _ := imageinit.Choose(imageinit.Auto, d, nil)
	p := machinefiles.Params{
		Name: name, Template: tmpl, Bridge: "m8s-absent0", Uplink: "m8s-absent1",
		YggAddress: netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d"),
		ImageRef:   "example.com/app:1", ImageDigest: "sha256:0123",
		Image: img, Mode: mode, KillSignal: imageinit.KillSignal(mode, d),
		EnvFile: filepath.Join(configs, "man8env.env"),
		Binds:   []machinefiles.Bind{{Host: data, Container: "/data"}},
		Version: "e2e", Created: time.Now(),
	}
	settings, err := machinefiles.Settings(p)
	if err != nil {
		t.Fatal(err)
	}
	env, err := machinefiles.Env(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(configs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := envfile.WriteFileAtomic(p.EnvFile, env, 0o644); err != nil {
		t.Fatal(err)
	}
	// A settings file in /run/systemd/nspawn is trusted, so Bind= applies;
	// this one is there only in the command's own mount namespace.
	nspawnDir := t.TempDir()
	if err := unitfile.WriteFileAtomic(filepath.Join(nspawnDir, name+".nspawn"), settings, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// --private-network replaces the settings' [Network] (the bridge is not
	// there in this test); everything else comes from the settings file.
	argv := testbed.NspawnDirArgs(nspawnDir, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"-M", name, "-D", rootfs, "--private-network")
	out, err := stopGently(exec.CommandContext(ctx, argv[0], argv[1:]...)).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 {
		t.Errorf("machine ended with %v, want the app's exit status 4\n%s\n--- settings:\n%s", err, out, settings.Bytes())
	}
	for _, want := range []string{
		"pwd=/srv/app dir",
		`greeting=say "hi" to $HOME's * friends`,
		"home=/home/app",
		"arg=it's $0",
		"volume content",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("machine output lacks %q:\n%s", want, out)
		}
	}
}
