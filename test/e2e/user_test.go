package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// An image's users the way distroless and most official images declare
// them: nonroot (65532, distroless' uid) with a supplementary group.
const (
	userPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	userGroup = "root:x:0:\nnonroot:x:65532:\nextra:x:2000:nonroot\nnobody:x:65534:\n"
)

// whoScript prints what the tests compare with Docker: the ids, HOME,
// nspawn's USER and LOGNAME (Docker sets neither), and whether the app can
// open its own stdout by name, as apps that log to /dev/stdout do.
const whoScript = `echo "id: $(id)"
echo "home: $HOME"
echo "user: ${USER-unset} logname: ${LOGNAME-unset}"
echo "stdout by name: ok" > /dev/stdout || echo "stdout by name: failed"
`

// runImage makes a machine from a busybox image with the config img (as
// machines pull would: man8s-init installed, container.nspawn and
// man8env.env generated from img), plus files (path: content, mode 0755),
// and runs it under systemd-nspawn until the app exits. It returns the
// machine's output and exit error.
func runImage(t *testing.T, name string, img v1.Config, files map[string]string) (string, error) {
	t.Helper()
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	if err := ociimage.Rootfs(rootfs, busybox); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootfs, "etc/passwd"), userPasswd, 0o644)
	writeFile(t, filepath.Join(rootfs, "etc/group"), userGroup, 0o644)
	for p, c := range files {
		writeFile(t, filepath.Join(rootfs, p), c, 0o755)
	}
	if _, err := initinstall.Install(rootfs, initinstall.Sources{Init: filepath.Join(bins.dir, "man8s-init"), Busybox: busybox}); err != nil {
		t.Fatal(err)
	}
	d, err := imageinit.Detect(rootfs, append(img.Entrypoint, img.Cmd...))
	if err != nil {
		t.Fatal(err)
	}
	mode, _ := imageinit.Choose(imageinit.Auto, d, nil)
	configs := filepath.Join(work, "configs")
	p := machinefiles.Params{
		Name: name, Template: "network_isolated", Bridge: "m8s-absent0",
		YggAddress: netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d"),
		ImageRef:   "example.com/" + strings.ToLower(name) + ":1", ImageDigest: "sha256:0123",
		Image: img, Mode: mode, KillSignal: imageinit.KillSignal(mode, d),
		EnvFile: filepath.Join(configs, "man8env.env"),
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
	nspawnDir := t.TempDir()
	if err := unitfile.WriteFileAtomic(filepath.Join(nspawnDir, name+".nspawn"), settings, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// --private-network replaces the settings' [Network]: no bridge here.
	argv := testbed.NspawnDirArgs(nspawnDir, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"-M", name, "-D", rootfs, "--private-network")
	out, err := stopGently(exec.CommandContext(ctx, argv[0], argv[1:]...)).CombinedOutput()
	return string(out), err
}

// outputLines splits a machine's output into lines, without the CRs of
// its console.
func outputLines(out string) []string {
	return strings.Split(strings.ReplaceAll(out, "\r", ""), "\n")
}

// Proof (issue 12, USER like Docker): under real systemd-nspawn, with the
// files mbctl generates, the app runs as the image's USER with what Docker
// gives it: uid, gid and groups from /etc/passwd and /etc/group (the primary
// group among them), HOME from the passwd entry or "/" for a uid without
// one, an explicit HOME from the image's ENV kept, and neither USER nor
// LOGNAME (nspawn sets both to root).
func TestUserLikeDocker(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	tests := []struct {
		name string
		user string
		env  []string
		want []string
	}{
		{"nonroot", "nonroot", nil, []string{
			"id: uid=65532(nonroot) gid=65532(nonroot) groups=2000(extra),65532(nonroot)",
			"home: /home/nonroot",
		}},
		{"numeric without entry", "1234", nil, []string{
			"id: uid=1234 gid=0(root) groups=0(root)",
			"home: /",
		}},
		{"user and group", "nonroot:extra", nil, []string{
			"id: uid=65532(nonroot) gid=2000(extra) groups=2000(extra)",
			"home: /home/nonroot",
		}},
		{"HOME from the image", "nonroot", []string{"HOME=/srv/data"}, []string{
			"id: uid=65532(nonroot) gid=65532(nonroot) groups=2000(extra),65532(nonroot)",
			"home: /srv/data",
		}},
		{"root", "", nil, []string{
			"id: uid=0(root) gid=0(root) groups=0(root)",
			"home: /root",
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := v1.Config{
				Env:        append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, tt.env...),
				Entrypoint: []string{"/bin/sh", "/who.sh"},
				User:       tt.user,
			}
			out, err := runImage(t, fmt.Sprintf("m8s-user%d", i), img, map[string]string{"who.sh": whoScript})
			if err != nil {
				t.Fatalf("machine ended with %v\n%s", err, out)
			}
			lines := outputLines(out)
			for _, w := range append(tt.want, "user: unset logname: unset", "stdout by name: ok") {
				if !slices.Contains(lines, w) {
					t.Errorf("machine output lacks the line %q:\n%s", w, out)
				}
			}
		})
	}
}

// tiniHost is Debian's static tini (package tini).
const tiniHost = "/usr/bin/tini-static"

// orphanScript, run by tini, makes an orphan (a sleep whose parent exits)
// and reports whether it comes back to tini ($PPID), as it would to tini as
// PID 1 under Docker, and whether it is reaped once killed.
const orphanScript = `. /who.sh
o=$(sh -c 'sleep 30 >/dev/null 2>&1 & echo $!')
i=0
while [ $i -lt 200 ]; do
	p=$(awk '/^PPid:/ {print $2}' /proc/$o/status)
	[ "$p" = "$PPID" ] && break
	sleep 0.05; i=$((i+1))
done
if [ "$p" = "$PPID" ]; then echo "orphan's parent: tini"; else echo "orphan's parent: $p, not tini ($PPID)"; fi
kill $o
i=0
while [ -e /proc/$o ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
if [ -e /proc/$o ]; then echo "orphan reaped: no"; else echo "orphan reaped: yes"; fi
`

// Proof (issue 12, image-provided inits): tini as the ENTRYPOINT of a USER
// nonroot image, supervised by man8s-init, runs as nonroot, does not warn
// that it is neither PID 1 nor a subreaper (man8s-init sets
// TINI_SUBREAPER), and reaps the app's orphans itself, as it does as PID 1
// under Docker.
func TestUserTiniEntrypoint(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox, tiniHost)
	tini, err := os.ReadFile(tiniHost)
	if err != nil {
		t.Fatal(err)
	}
	img := v1.Config{
		Env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Entrypoint: []string{"/usr/bin/tini", "--"},
		Cmd:        []string{"/bin/sh", "/app.sh"},
		User:       "nonroot",
	}
	out, err := runImage(t, "m8s-user-tini", img, map[string]string{
		"usr/bin/tini": string(tini), "who.sh": whoScript, "app.sh": orphanScript,
	})
	if err != nil {
		t.Fatalf("machine ended with %v\n%s", err, out)
	}
	lines := outputLines(out)
	for _, w := range []string{
		"id: uid=65532(nonroot) gid=65532(nonroot) groups=2000(extra),65532(nonroot)",
		"home: /home/nonroot",
		"orphan's parent: tini",
		"orphan reaped: yes",
	} {
		if !slices.Contains(lines, w) {
			t.Errorf("machine output lacks the line %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "child subreaper") || strings.Contains(out, "WARN  tini") {
		t.Errorf("tini warns:\n%s", out)
	}
}
