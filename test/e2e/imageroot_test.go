package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/testbed/loopfs"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// roleApp serves its ROLE over HTTP on [::]:8080 from its /www volume, and
// says whether its root is writable.
const roleApp = `if touch /etc/probe-write 2>/dev/null; then echo "root writable"; else echo "root read-only"; fi
echo "$ROLE" > /www/index.html
echo "role $ROLE serving"
exec httpd -f -p [::]:8080 -h /www`

// roleImage pushes the role app as ref.
func roleImage(t *testing.T, ref string) {
	t.Helper()
	script, err := ociimage.Layer(ociimage.File("app.sh", []byte(roleApp), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "/app.sh"},
		Env:        []string{ociimage.DefaultPath, "ROLE=none"},
		Volumes:    []string{"/www"},
	}, script)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, img, ref)
}

// getYgg fetches / from port 8080 of machine name's Yggdrasil address,
// from inside the host, once it answers 200 (the apps here answer with
// their role or a word that says what they reached).
func (m *machineHost) getYgg(t *testing.T, name string) string {
	t.Helper()
	addr, err := yggaddr.Address(m.Ygg.Subnet, name)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return m.DialContext(ctx, network, a) },
	}}
	url := "http://" + netip.AddrPortFrom(addr, 8080).String() + "/"
	var body string
	waitFor(t, name+" to answer on "+url, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = strings.TrimSpace(string(b))
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return body
}

// waitForOutput waits until the machine's output holds want, and shows
// the output when it does not in time.
func waitForOutput(t *testing.T, r *runningMachine, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(r.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the machine did not print %q in 60s:\n%s", want, r.output())
		}
		select {
		case <-r.done:
			t.Fatalf("the machine stopped before it printed %q:\n%s", want, r.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pulledRoot is the image_root of `machines pull --json`.
type pulledRoot struct {
	Path   string `json:"path"`
	Strict bool   `json:"strict"`
	Reused bool   `json:"reused"`
}

// pullRoot runs machines pull with args and returns its image root.
func (m *machineHost) pullRoot(t *testing.T, args ...string) pulledRoot {
	t.Helper()
	out := m.mustMbctl(t, append([]string{"machines", "pull", "--quiet", "--json", "--no-probe"}, args...)...)
	var r struct {
		Root *pulledRoot `json:"image_root"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Root == nil {
		return pulledRoot{}
	}
	return *r.Root
}

// cacheRoots is the image_root part of `cache list --json`.
func (m *machineHost) cacheRoots(t *testing.T) map[string][]string {
	t.Helper()
	var entries []struct {
		ImageRoot *struct {
			Path   string   `json:"path"`
			UsedBy []string `json:"used_by"`
		} `json:"image_root"`
	}
	if err := json.Unmarshal([]byte(m.mustMbctl(t, "cache", "list", "--json")), &entries); err != nil {
		t.Fatal(err)
	}
	roots := map[string][]string{}
	for _, e := range entries {
		if e.ImageRoot != nil {
			roots[e.ImageRoot.Path] = e.ImageRoot.UsedBy
		}
	}
	return roots
}

// Proof (issue 16, strict machines): two strict machines of one image run
// at once on one shared read-only root, unpacked once, each with its own
// volume, environment and Yggdrasil address; the root stays while a
// machine uses it and goes with the last one.
func TestStrictMachinesShareOneRoot(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/role:1"
	roleImage(t, ref)

	var pulls []pulledRoot
	for _, role := range []string{"alpha", "beta"} {
		pulls = append(pulls, m.pullRoot(t, "--strict", "--volume", "/www=data", "--env", "ROLE="+role, ref, "s-"+role))
	}
	a, b := pulls[0], pulls[1]
	if a.Path == "" || a.Path != b.Path || !a.Strict || a.Reused || !b.Reused {
		t.Fatalf("image roots of the two pulls: %+v, %+v; want one root, unpacked by the first", a, b)
	}
	for _, n := range []string{"s-alpha", "s-beta"} {
		if got, err := os.Readlink(filepath.Join(m.work, "machines", n)); err != nil || got != a.Path {
			t.Errorf("%s's rootfs -> %q (%v), want %s", n, got, err, a.Path)
		}
	}

	runA, runB := m.startRun(t, "s-alpha"), m.startRun(t, "s-beta")
	for _, r := range []*runningMachine{runA, runB} {
		waitForOutput(t, r, "serving")
	}
	if got := m.getYgg(t, "s-alpha"); got != "alpha" {
		t.Errorf("s-alpha answers %q", got)
	}
	if got := m.getYgg(t, "s-beta"); got != "beta" {
		t.Errorf("s-beta answers %q", got)
	}
	for _, r := range []*runningMachine{runA, runB} {
		if out := r.output(); !strings.Contains(out, "root read-only") {
			t.Errorf("a strict machine could write into its root:\n%s", out)
		}
	}
	if _, err := os.Stat(filepath.Join(a.Path, "etc/probe-write")); err == nil {
		t.Error("a machine wrote into the shared root")
	}
	if got := m.cacheRoots(t)[a.Path]; strings.Join(got, " ") != "s-alpha s-beta" {
		t.Errorf("cache list: root used by %v", got)
	}
	runA.stop(t)
	runB.stop(t)

	// The root goes with its last machine, not before.
	m.mustMbctl(t, "machines", "remove", "--yes", "s-alpha")
	if _, err := os.Stat(a.Path); err != nil {
		t.Fatalf("the root went while s-beta uses it: %v", err)
	}
	out := m.mustMbctl(t, "machines", "remove", "--yes", "s-beta")
	if !strings.Contains(out, "Deleted the image root "+a.Path) {
		t.Errorf("remove of the last user:\n%s", out)
	}
	if _, err := os.Stat(a.Path); !os.IsNotExist(err) {
		t.Errorf("the unused root stayed: %v", err)
	}
}

// Proof (issue 16, btrfs): with the machines on btrfs, the image is
// unpacked once into a read-only subvolume and every machine's rootfs is
// a writable snapshot of it; a machine's writes stay its own.
func TestMachinesOnBtrfsAreSnapshots(t *testing.T) {
	m := newMachineHost(t)
	loopfs.MountOnT(t, "btrfs", 1<<30, filepath.Join(m.work, "machines"))
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/role:1"
	roleImage(t, ref)

	for i, role := range []string{"one", "two"} {
		r := m.pullRoot(t, "--volume", "/www=data", "--env", "ROLE="+role, ref, "b-"+role)
		if r.Path == "" || r.Strict || r.Reused != (i == 1) {
			t.Fatalf("pull %d: image root %+v", i+1, r)
		}
		rootfs := filepath.Join(m.work, "machines", "b-"+role)
		if sub, err := btrfs.IsSubvolume(rootfs); err != nil || !sub {
			t.Errorf("%s is not a subvolume (%v)", rootfs, err)
		}
	}
	m.mustMbctl(t, "machines", "snapshot", "b-one", "fresh", "--volumes")
	run := m.startRun(t, "b-one")
	if got := m.getYgg(t, "b-one"); got != "one" {
		t.Errorf("b-one answers %q", got)
	}
	if !strings.Contains(run.output(), "root writable") {
		t.Errorf("a free machine on btrfs cannot write its root:\n%s", run.output())
	}
	run.stop(t)
	if _, err := os.Stat(filepath.Join(m.work, "machines/b-two/etc/probe-write")); !os.IsNotExist(err) {
		t.Errorf("b-one's write shows in b-two: %v", err)
	}
	// Back to the snapshot taken before the run: the write is gone, the
	// data volume as it was (the app wrote its page into it since).
	written := filepath.Join(m.work, "machines/b-one/etc/probe-write")
	if _, err := os.Stat(written); err != nil {
		t.Fatalf("the run's write is not in b-one's rootfs: %v", err)
	}
	page := filepath.Join(m.work, "storage/b-one/www/index.html")
	if _, err := os.Stat(page); err != nil {
		t.Fatalf("the run's page is not in b-one's data volume: %v", err)
	}
	if out := m.mustMbctl(t, "machines", "snapshots", "b-one"); !strings.Contains(out, "fresh") {
		t.Errorf("snapshots:\n%s", out)
	}
	m.mustMbctl(t, "machines", "restore", "--yes", "--volumes", "b-one", "fresh")
	if _, err := os.Stat(written); !os.IsNotExist(err) {
		t.Errorf("after the restore the run's write is still there: %v", err)
	}
	if _, err := os.Stat(page); !os.IsNotExist(err) {
		t.Errorf("after restore --volumes the page the run wrote is still there: %v", err)
	}
	run = m.startRun(t, "b-one")
	if got := m.getYgg(t, "b-one"); got != "one" {
		t.Errorf("b-one after the restore answers %q", got)
	}
	run.stop(t)
	for _, n := range []string{"b-one", "b-two"} {
		m.mustMbctl(t, "machines", "remove", "--yes", n)
	}
	if roots := m.cacheRoots(t); len(roots) != 0 {
		t.Errorf("image roots left after removing every machine: %v", roots)
	}
}

// clusterApp is one image, three roles: the first argument names the
// role, the second, if any, the peer whose page it builds on.
const clusterApp = `role=$1 peer=$2
page="$role($CLUSTER)"
if [ -n "$peer" ]; then
	until body=$(wget -q -O - "$peer"); do echo "waiting for $peer"; sleep 0.5; done
	page="$page<-$body"
fi
echo "$page" > /www/index.html
echo "role $role serving $page"
exec httpd -f -p [::]:8080 -h /www`

// Proof (issue 16, clusters): a SeaweedFS-like cluster from one image, its
// three roles chosen by arguments (--cmd), the second and third machines
// cloned from the first, all strict on one shared root, each reaching the
// one before it on its Yggdrasil address; the clones inherit the first's
// variables.
func TestClusterFromOneImage(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/cluster:1"
	script, err := ociimage.Layer(ociimage.File("cluster.sh", []byte(clusterApp), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "/cluster.sh"}, Cmd: []string{"none"},
		Env: []string{ociimage.DefaultPath}, Volumes: []string{"/www"},
	}, script)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, img, ref)
	url := func(name string) string {
		addr, err := yggaddr.Address(m.Ygg.Subnet, name)
		if err != nil {
			t.Fatal(err)
		}
		return "http://" + netip.AddrPortFrom(addr, 8080).String() + "/"
	}
	master := m.pullRoot(t, "--strict", "--volume", "/www=data", "--env", "CLUSTER=c1", "--cmd", "master", ref, "sw-master")
	m.mustMbctl(t, "machines", "clone", "--quiet", "--no-probe", "--yes", "sw-master", "sw-volume", "--cmd", "volume '"+url("sw-master")+"'")
	m.mustMbctl(t, "machines", "clone", "--quiet", "--no-probe", "--volume", "/www=data", "sw-volume", "sw-filer", "--cmd", "filer '"+url("sw-volume")+"'")
	for _, n := range []string{"sw-master", "sw-volume", "sw-filer"} {
		if got, err := os.Readlink(filepath.Join(m.work, "machines", n)); err != nil || got != master.Path {
			t.Errorf("%s's rootfs -> %q (%v), want the shared root %s", n, got, err, master.Path)
		}
	}
	// Started in reverse: each waits for the one it builds on.
	var runs []*runningMachine
	for _, n := range []string{"sw-filer", "sw-volume", "sw-master"} {
		r := m.startRun(t, n)
		runs = append(runs, r)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s:\n%s", n, r.output())
			}
		})
	}
	waitForOutput(t, runs[0], "serving")
	if got, want := m.getYgg(t, "sw-filer"), "filer(c1)<-volume(c1)<-master(c1)"; got != want {
		t.Errorf("the filer answers %q, want %q", got, want)
	}
	for _, r := range runs {
		r.stop(t)
	}
	if got := m.cacheRoots(t)[master.Path]; strings.Join(got, " ") != "sw-filer sw-master sw-volume" {
		t.Errorf("the shared root's machines: %v", got)
	}
}
