package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/test/bench/hostload"
)

// ggcrModule is the module crane is built from.
const ggcrModule = "github.com/google/go-containerregistry"

// ggcrFallbackVersion is used when the build info does not name the
// version of ggcrModule (it always does under `go run`).
const ggcrFallbackVersion = "v0.22.1"

// fixtureRepo is the repository the fixture is pushed to, imageRepo its
// tag; the upgrade cases' images are pushed to the same repository (see
// upgrade.go).
const (
	fixtureRepo = "bench/debian-go"
	imageRepo   = fixtureRepo + ":latest"
)

// blobCacheDir is where skopeo and podman, as root, keep their blob-info
// cache; the benchmark hides it behind an empty dir (see sandbox) so the
// host's is not touched.
const blobCacheDir = "/var/lib/containers/cache"

// podmanTmpfs are the places podman writes to whatever its flags say
// (/run/containers/networks, /run/crun, the SHM lock /dev/shm/libpod_lock),
// given a fresh tmpfs in its mount namespace.
var podmanTmpfs = []string{"/run:0755", "/dev/shm:1777"}

// toolInfo is an executable the cases need.
type toolInfo struct {
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	Err     string `json:"error,omitempty"`
}

// toolPackages says how to get a missing tool.
var toolPackages = map[string]string{
	"skopeo":          "apt-get install skopeo",
	"umoci":           "apt-get install umoci",
	"podman":          "apt-get install podman",
	"gzip":            "apt-get install gzip",
	"tar":             "apt-get install tar",
	"bash":            "apt-get install bash",
	"unshare":         "apt-get install util-linux",
	"mount":           "apt-get install mount",
	"sh":              "apt-get install dash",
	"docker-registry": "apt-get install docker-registry",
}

// benchCase is one thing measured.
type benchCase struct {
	ID    string
	Title string
	// Cmd is the measured command line, for the report.
	Cmd string
	// tools are executables looked up on PATH; one missing makes the case n/a.
	tools    []string
	registry bool // needs the registry with the pushed image
	app      bool // needs the upgrade cases' images (upgrade.go)
	mbctl    bool
	crane    bool
	// fs is the file system of the case's fresh dir with -fresh-fs
	// (default ext4).
	fs string
	// run does the case's untimed setup and its timed part in dir, a fresh
	// empty directory, and says where the unpacked tree is (if any).
	run func(ctx context.Context, b *bench, dir string) (measurement, error)

	res *CaseResult
}

// measurement is one run of a case.
type measurement struct {
	result
	tree      string // the unpacked root filesystem, counted in round 1
	layerGETs *int
	blobGETs  *int
	layers    []LayerTiming // from mbctl -v, for the upgrade cases
	extraDisk *int64        // the disk the timed part took (second machines)
}

// bench is the state of one benchmark run.
type bench struct {
	opts         options
	started      time.Time
	work         string
	fixture      *Fixture
	fixtureBuilt bool
	tools        map[string]toolInfo

	reg         *registry.Registry
	regErr      error
	ref         string
	imageDigest string
	layers      []v1.Layer // the fixture's, as pushed

	app    *appImages // the upgrade cases' images
	appErr error

	mbctl, mbctlVersion string
	mbctlErr            error
	crane, craneVersion string
	craneErr            error
	podmanDriver        string
	loadStart           string

	// outputs are the cases' directories without -fresh-fs, removed after
	// all measurements: deleting a tree of ~18k files just before the next
	// case makes ext4 skip the freshly freed inodes (recently_deleted) and
	// slows down whichever tool comes next, several times over on this VM.
	outputs []string
}

// allCases lists the cases in their report order.
func allCases() []*benchCase {
	cases := []*benchCase{
		{
			ID: "a", Title: "skopeo copy + umoci unpack",
			Cmd:   "skopeo copy --src-tls-verify=false docker://REF oci:DIR:latest && umoci unpack --image DIR:latest BUNDLE",
			tools: []string{"skopeo", "umoci", "unshare", "mount", "sh"}, registry: true,
			run: runSkopeoUmoci,
		},
		{
			ID: "b", Title: "mbctl oci download, cold cache",
			Cmd:      "mbctl --config CONF oci download REF PATH (empty cache)",
			registry: true, mbctl: true,
			run: runMbctlCold,
		},
		{
			ID: "c", Title: "mbctl oci download, warm cache",
			Cmd:      "mbctl --config CONF oci download REF PATH (cache filled by an untimed download)",
			registry: true, mbctl: true,
			run: runMbctlWarm,
		},
		{
			ID: "d", Title: "gzip -dc | tar -x, 3 blobs from disk",
			Cmd:   "for BLOB in 1 2 3: gzip -dc BLOB | tar --numeric-owner -x -C DIR",
			tools: []string{"gzip", "tar", "bash"},
			run:   runGzipTar,
		},
		{
			ID: "e", Title: "podman pull, own storage",
			Cmd:   "podman --root R --runroot RR --storage-driver D pull --tls-verify=false REF",
			tools: []string{"podman", "unshare", "mount", "sh"}, registry: true,
			run: runPodman,
		},
		{
			ID: "f", Title: "crane export | tar -x",
			Cmd:   "crane export --insecure REF - | tar --numeric-owner -x -C DIR",
			tools: []string{"tar", "bash"}, registry: true, crane: true,
			run: runCrane,
		},
		{
			ID: "u1", Title: "mbctl machines upgrade, 1 of 4 layers changed",
			Cmd:      "mbctl --config CONF -v machines upgrade --yes --quiet NAME (a stopped machine pulled from REF:" + appStableTag + " at v1, then the tag moved to v2)",
			registry: true, app: true, mbctl: true,
			run: runUpgrade,
		},
		{
			ID: "u2", Title: "mbctl machines pull of v2, cold cache",
			Cmd:      "mbctl --config CONF -v machines pull --yes --quiet REF:" + appV2Tag + " NAME (empty cache)",
			registry: true, app: true, mbctl: true,
			run: runFreshPull,
		},
		{
			ID: "u3", Title: "mbctl oci download, changed layer alone",
			Cmd:      "mbctl --config CONF oci download REF:" + appLayerTag + " PATH (a one-layer image of it, empty cache)",
			registry: true, app: true, mbctl: true,
			run: runChangedLayer,
		},
		{
			ID: "u5", Title: "mbctl machines upgrade on btrfs, 1 of 4 changed", fs: "btrfs",
			Cmd:      "as (u1), in a btrfs file system: the image root store keeps the chain of the unchanged layers",
			registry: true, app: true, mbctl: true, tools: []string{"mkfs.btrfs"},
			run: runUpgrade,
		},
		{
			ID: "u4", Title: "podman pull + recreate, 1 of 4 changed",
			Cmd:   "podman pull REF:" + appStableTag + " && podman rm NAME && podman create --name NAME REF:" + appStableTag + " (created at v1, then the tag moved to v2)",
			tools: []string{"podman", "unshare", "mount", "sh"}, registry: true, app: true,
			run: runPodmanRecreate,
		},
		{
			ID: "p0", Title: "mbctl oci download, cold cache, no progress",
			Cmd:      "mbctl --config CONF --progress=none oci download REF PATH (empty cache)",
			registry: true, mbctl: true,
			run: func(ctx context.Context, b *bench, dir string) (measurement, error) {
				return runMbctlColdWith(ctx, b, dir, "none")
			},
		},
		{
			ID: "p1", Title: "mbctl oci download, cold cache, progress bars",
			Cmd:      "mbctl --config CONF --progress=tty oci download REF PATH (empty cache; the bars drawn into the output file)",
			registry: true, mbctl: true,
			run: func(ctx context.Context, b *bench, dir string) (measurement, error) {
				return runMbctlColdWith(ctx, b, dir, "tty")
			},
		},
		{
			ID: "g1", Title: "gzip -dc biggest layer >/dev/null",
			Cmd:   "gzip -dc BLOB >/dev/null",
			tools: []string{"gzip"},
			run:   func(ctx context.Context, b *bench, dir string) (measurement, error) { return runGunzip(ctx, b, 0) },
		},
		{
			ID: "g2", Title: "gzip -dc 2nd biggest layer >/dev/null",
			Cmd:   "gzip -dc BLOB >/dev/null",
			tools: []string{"gzip"},
			run:   func(ctx context.Context, b *bench, dir string) (measurement, error) { return runGunzip(ctx, b, 1) },
		},
	}
	return append(cases, secondCases()...)
}

// setup finds the tools, starts the registry and pushes the image, and
// builds mbctl and crane, as far as the selected cases need them. What
// fails makes the cases that need it n/a; setup itself fails only when
// the context ends.
func (b *bench) setup(ctx context.Context, cases []*benchCase) error {
	need := map[string]bool{}
	var needReg, needApp, needMbctl, needCrane bool
	for _, c := range cases {
		for _, t := range c.tools {
			need[t] = true
		}
		needReg = needReg || c.registry
		needApp = needApp || c.app
		needMbctl = needMbctl || c.mbctl
		needCrane = needCrane || c.crane
	}
	versionArgs := map[string][]string{
		"skopeo": {"--version"}, "umoci": {"--version"}, "podman": {"--version"},
		"gzip": {"--version"}, "tar": {"--version"}, "bash": {"--version"},
	}
	names := make([]string, 0, len(need))
	for t := range need {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		p, err := exec.LookPath(t)
		if err != nil {
			b.tools[t] = toolInfo{Err: fmt.Sprintf("%s not found (install: %s)", t, toolPackages[t])}
			continue
		}
		ti := toolInfo{Path: p}
		if args, ok := versionArgs[t]; ok {
			if out, err := output(ctx, append([]string{p}, args...)...); err == nil {
				ti.Version = versionOf(out)
			}
		}
		b.tools[t] = ti
	}
	if need["podman"] && b.tools["podman"].Err == "" {
		b.podmanDriver = b.pickPodmanDriver(ctx)
	}
	if needReg {
		b.regErr = b.startRegistry(ctx)
	}
	if needApp && b.regErr == nil {
		b.appErr = b.pushApp(ctx)
	}
	if needMbctl {
		b.mbctl, b.mbctlErr = b.findMbctl(ctx)
		if b.mbctlErr == nil {
			if out, err := output(ctx, b.mbctl, "version"); err == nil {
				line, _, _ := strings.Cut(out, "\n")
				b.mbctlVersion = strings.TrimPrefix(line, "mbctl ")
			}
		}
	}
	if needCrane {
		b.crane, b.craneErr = b.findCrane(ctx)
		if b.craneErr == nil {
			if out, err := output(ctx, b.crane, "version"); err == nil {
				b.craneVersion = versionOf(out)
			}
		}
	}
	return ctx.Err()
}

// versionOf returns the version in the first line of a --version output:
// the word after "version", else the last word ("1.34" from
// "tar (GNU tar) 1.34").
func versionOf(out string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if i := strings.Index(line, "version "); i >= 0 {
		line = line[i+len("version "):]
		if f := strings.Fields(line); len(f) > 0 {
			return f[0]
		}
	}
	if f := strings.Fields(line); len(f) > 0 {
		return f[len(f)-1]
	}
	return ""
}

// unavailable says why c cannot run, or "".
func (b *bench) unavailable(c *benchCase) string {
	for _, t := range c.tools {
		if ti := b.tools[t]; ti.Err != "" {
			return ti.Err
		}
	}
	if c.registry && b.regErr != nil {
		return "registry: " + b.regErr.Error()
	}
	if c.app && b.appErr != nil {
		return "upgrade images: " + b.appErr.Error()
	}
	if c.mbctl && b.mbctlErr != nil {
		return b.mbctlErr.Error()
	}
	if c.crane && b.craneErr != nil {
		return b.craneErr.Error()
	}
	return ""
}

// startRegistry starts the registry with its storage in the run's dir and
// pushes the fixture image.
func (b *bench) startRegistry(ctx context.Context) error {
	if _, err := exec.LookPath(registry.DefaultBinary); err != nil {
		return fmt.Errorf("%s not found (install: %s)", registry.DefaultBinary, toolPackages["docker-registry"])
	}
	dir := filepath.Join(b.work, "registry")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	reg, err := registry.Start(ctx, registry.Options{Dir: dir})
	if err != nil {
		return err
	}
	b.reg = reg
	b.ref = reg.Addr() + "/" + imageRepo

	start := time.Now()
	layers := make([]v1.Layer, len(b.fixture.Layers))
	for i, li := range b.fixture.Layers {
		l, err := tarball.LayerFromFile(b.fixture.BlobPath(b.opts.fixtures, i), tarball.WithMediaType(types.DockerLayer))
		if err != nil {
			return fmt.Errorf("reading layer blob %s: %w", li.File, err)
		}
		d, err1 := l.Digest()
		diffID, err2 := l.DiffID()
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("hashing layer blob %s: %w", li.File, err)
		}
		if d.String() != li.Digest || diffID.String() != li.DiffID {
			return fmt.Errorf("layer blob %s does not match %s (digest %s, diff_id %s): rebuild the fixture with -rebuild",
				li.File, fixtureJSON, d, diffID)
		}
		layers[i] = l
	}
	b.layers = layers
	img, err := ociimage.Image(ociimage.AppConfig{Cmd: []string{"/bin/bash"}}, layers...)
	if err != nil {
		return err
	}
	d, err := ociimage.Push(ctx, img, b.ref)
	if err != nil {
		return err
	}
	b.imageDigest = d.String()
	logf("pushed %s@%s in %s", b.ref, d, since(start))
	return nil
}

// findMbctl returns the -mbctl binary, or builds one from the module the
// benchmark runs in, with man8s-init beside it (where mbctl looks for it
// first), which the machines cases install into the machines.
func (b *bench) findMbctl(ctx context.Context) (string, error) {
	if b.opts.mbctl != "" {
		p, err := exec.LookPath(b.opts.mbctl)
		if err != nil {
			return "", fmt.Errorf("-mbctl %s: %w", b.opts.mbctl, err)
		}
		return filepath.Abs(p)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building mbctl: go not found: pass -mbctl")
	}
	gomod, err := output(ctx, goBin, "env", "GOMOD")
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("building mbctl: not inside the mbctl module: run from the repository or pass -mbctl")
	}
	binDir := filepath.Join(b.work, "bin")
	start := time.Now()
	// CGO_ENABLED=0: man8s-init must be static; mbctl without the isal
	// tag is pure Go either way.
	cmd := command(ctx, cmdSpec{
		argv: []string{goBin, "build", "-o", binDir + "/", "./cmd/mbctl", "./cmd/man8s-init"},
		env:  []string{"CGO_ENABLED=0"},
	})
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building mbctl: %w: %s", err, lastLine(string(out)))
	}
	logf("built mbctl and man8s-init in %s", since(start))
	return filepath.Join(binDir, "mbctl"), nil
}

// findCrane returns the -crane binary, or installs crane at the
// go-containerregistry version this program was built with (go.mod's)
// into the run's dir, from a dir outside the module.
func (b *bench) findCrane(ctx context.Context) (string, error) {
	if b.opts.crane != "" {
		p, err := exec.LookPath(b.opts.crane)
		if err != nil {
			return "", fmt.Errorf("-crane %s: %w", b.opts.crane, err)
		}
		return filepath.Abs(p)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building crane: go not found: pass -crane")
	}
	version := ggcrFallbackVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == ggcrModule {
				version = m.Version
				if m.Replace != nil {
					version = m.Replace.Version
				}
			}
		}
	}
	binDir := filepath.Join(b.work, "bin")
	outside := filepath.Join(b.work, "crane-build")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	cmd := command(ctx, cmdSpec{
		argv: []string{goBin, "install", ggcrModule + "/cmd/crane@" + version},
		env:  []string{"GOBIN=" + binDir, "GOWORK=off", "GOFLAGS="},
	})
	cmd.Dir = outside
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building crane %s: %w: %s", version, err, lastLine(string(out)))
	}
	logf("built crane %s in %s", version, since(start))
	return filepath.Join(binDir, "crane"), nil
}

// podmanArgs are the global flags that give podman its own storage, state
// and temp dirs: the storage under dir, the state in a short-named dir in
// os.TempDir() (podman refuses a runroot longer than 50 characters), which
// cleanup removes.
func (b *bench) podmanArgs(dir, driver string) (args, env []string, cleanup func() error, err error) {
	state, err := os.MkdirTemp("", "mbb-pod-")
	if err != nil {
		return nil, nil, nil, err
	}
	cleanup = func() error { return removeTree(state) }
	for _, d := range []string{filepath.Join(dir, "root"), filepath.Join(dir, "tmp"), filepath.Join(dir, "networks"), filepath.Join(state, "run"), filepath.Join(state, "libpod")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, nil, nil, errors.Join(err, cleanup())
		}
	}
	conf := filepath.Join(dir, "storage.conf")
	content := fmt.Sprintf("[storage]\ndriver = %q\nrunroot = %q\ngraphroot = %q\n",
		driver, filepath.Join(state, "run"), filepath.Join(dir, "root"))
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		return nil, nil, nil, errors.Join(err, cleanup())
	}
	args = []string{
		b.tools["podman"].Path,
		"--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(state, "run"),
		"--tmpdir", filepath.Join(state, "libpod"),
		"--storage-driver", driver,
		"--network-config-dir", filepath.Join(dir, "networks"),
		"--events-backend", "none",
		"--cgroup-manager", "cgroupfs",
	}
	env = []string{"CONTAINERS_STORAGE_CONF=" + conf, "TMPDIR=" + filepath.Join(dir, "tmp")}
	return args, env, cleanup, nil
}

// pickPodmanDriver returns -podman-driver, or for "auto" overlay when
// podman can use it here, else vfs.
func (b *bench) pickPodmanDriver(ctx context.Context) string {
	if b.opts.podmanDriver != "auto" {
		return b.opts.podmanDriver
	}
	dir, err := os.MkdirTemp(b.work, "podman-probe-")
	if err != nil {
		return "vfs"
	}
	defer removeTree(dir)
	args, env, cleanup, err := b.podmanArgs(dir, "overlay")
	if err != nil {
		return "vfs"
	}
	defer cleanup()
	argv, err := sandbox(b, dir, podmanTmpfs, append(args, "info", "--format", "{{.Store.GraphDriverName}}"))
	if err != nil {
		return "vfs"
	}
	out, err := outputEnv(ctx, cmdSpec{argv: argv, env: env})
	if err != nil || out != "overlay" {
		logf("podman cannot use overlay here (%v): using vfs", err)
		return "vfs"
	}
	return "overlay"
}

// tmpEnv points the temp dir of a command into dir.
func tmpEnv(dir string) ([]string, error) {
	t := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(t, 0o700); err != nil {
		return nil, err
	}
	return []string{"TMPDIR=" + t}, nil
}

// sandbox wraps argv so that it runs in a private mount namespace where
// what the containers tools write outside the dirs they are given lands in
// throwaway places: an empty dir below dir is bind-mounted over their
// blob-info cache (or its deepest existing parent), and each of mounts
// gets a fresh tmpfs ("PATH:MODE") or a dir of the case bind-mounted
// ("PATH:/DIR", for state that must outlive one command). Nothing is
// mounted in the host's namespace.
func sandbox(b *bench, dir string, mounts []string, argv []string) ([]string, error) {
	target := blobCacheDir
	for {
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			break
		}
		target = filepath.Dir(target)
	}
	empty := filepath.Join(dir, "blob-info-cache")
	if err := os.MkdirAll(empty, 0o700); err != nil {
		return nil, err
	}
	const script = `set -e
mount=$1 empty=$2 target=$3 n=$4
shift 4
"$mount" --bind "$empty" "$target"
while [ "$n" -gt 0 ]; do
	case $2 in
	/*) "$mount" --bind "$2" "$1" ;;
	*) "$mount" -t tmpfs -o "mode=$2" mbctl-bench "$1" ;;
	esac
	shift 2
	n=$((n - 1))
done
exec "$@"`
	wrapped := []string{
		b.tools["unshare"].Path, "--mount", "--propagation", "private", "--",
		b.tools["sh"].Path, "-c", script, "sh",
		b.tools["mount"].Path, empty, target, strconv.Itoa(len(mounts)),
	}
	for _, t := range mounts {
		p, mode, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fmt.Errorf("sandbox: mount %q: want PATH:MODE or PATH:/DIR", t)
		}
		wrapped = append(wrapped, p, mode)
	}
	return append(wrapped, argv...), nil
}

// runSkopeoUmoci is case (a).
func runSkopeoUmoci(ctx context.Context, b *bench, dir string) (measurement, error) {
	env, err := tmpEnv(dir)
	if err != nil {
		return measurement{}, err
	}
	layout := filepath.Join(dir, "oci")
	bundle := filepath.Join(dir, "bundle")
	skopeo, err := sandbox(b, dir, nil, []string{
		b.tools["skopeo"].Path, "copy", "--src-tls-verify=false", "docker://" + b.ref, "oci:" + layout + ":latest",
	})
	if err != nil {
		return measurement{}, err
	}
	res, err := runTimed(ctx,
		cmdSpec{argv: skopeo, env: env},
		cmdSpec{argv: []string{b.tools["umoci"].Path, "unpack", "--image", layout + ":latest", bundle}, env: env},
	)
	return measurement{result: res, tree: filepath.Join(bundle, "rootfs")}, err
}

// benchYggPrefix is the Yggdrasil subnet the machines cases' machines get
// their addresses from: the admin endpoint the configuration names does
// not exist, so mbctl falls back on it.
const benchYggPrefix = "300:2e98:a4b0:1789::/64"

// writeMbctlConfig writes a configuration whose paths all lie in dir, that
// lists the registry as insecure and gives a fixed Yggdrasil subnet.
func writeMbctlConfig(b *bench, dir string) (string, error) {
	p := func(name string) string { return filepath.Join(dir, "mbctl", name) }
	conf := fmt.Sprintf(`[paths]
machines = %q
configs = %q
storage = %q
nspawn = %q
machinectl = %q
cache = %q
scratch = %q

[registries]
insecure = [%q]

[network]
ygg_admin = %q
ygg_prefix = %q
`, p("machines"), p("configs"), p("storage"), p("nspawn"), p("machinectl"), p("cache"), p("scratch"), b.reg.Addr(),
		"unix://"+p("no-yggdrasil.sock"), benchYggPrefix)
	path := filepath.Join(dir, "mbctl.toml")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// mbctlDownload returns the command that downloads image ref to dest.
func mbctlDownload(b *bench, conf, dir, ref, dest string) (cmdSpec, error) {
	return mbctlCommand(b, conf, dir, "oci", "download", ref, dest)
}

// mbctlCommand returns the command mbctl --config conf args, its temp dir
// in dir.
func mbctlCommand(b *bench, conf, dir string, args ...string) (cmdSpec, error) {
	env, err := tmpEnv(dir)
	if err != nil {
		return cmdSpec{}, err
	}
	return cmdSpec{argv: append([]string{b.mbctl, "--config", conf}, args...), env: env}, nil
}

// runMbctlCold is case (b).
func runMbctlCold(ctx context.Context, b *bench, dir string) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	dest := filepath.Join(dir, "rootfs")
	spec, err := mbctlDownload(b, conf, dir, b.ref, dest)
	if err != nil {
		return measurement{}, err
	}
	res, err := runTimed(ctx, spec)
	return measurement{result: res, tree: dest}, err
}

// runMbctlColdWith is cases (p0) and (p1): case (b) with --progress=mode,
// what the display costs.
func runMbctlColdWith(ctx context.Context, b *bench, dir, mode string) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	dest := filepath.Join(dir, "rootfs")
	spec, err := mbctlCommand(b, conf, dir, "--progress="+mode, "oci", "download", b.ref, dest)
	if err != nil {
		return measurement{}, err
	}
	res, err := runTimed(ctx, spec)
	return measurement{result: res, tree: dest}, err
}

// runMbctlWarm is case (c): an untimed download fills the cache, then the
// timed one runs; the registry's access log counts the blob GETs of the
// timed one.
func runMbctlWarm(ctx context.Context, b *bench, dir string) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	fill := filepath.Join(dir, "fill")
	spec, err := mbctlDownload(b, conf, dir, b.ref, fill)
	if err != nil {
		return measurement{}, err
	}
	if _, err := runTimed(ctx, spec); err != nil {
		return measurement{}, fmt.Errorf("filling the cache: %w", err)
	}
	syncAll()

	layersBefore, blobsBefore, err := b.countBlobGETs(b.fixture.digests())
	if err != nil {
		return measurement{}, err
	}
	dest := filepath.Join(dir, "rootfs")
	if spec, err = mbctlDownload(b, conf, dir, b.ref, dest); err != nil {
		return measurement{}, err
	}
	res, err := runTimed(ctx, spec)
	if err != nil {
		return measurement{result: res}, err
	}
	layersAfter, blobsAfter, err := b.countBlobGETs(b.fixture.digests())
	if err != nil {
		return measurement{}, err
	}
	layers, blobs := layersAfter-layersBefore, blobsAfter-blobsBefore
	return measurement{result: res, tree: dest, layerGETs: &layers, blobGETs: &blobs}, nil
}

// countBlobGETs returns how many GETs of the layer blobs with the given
// digests, and of any blob, the registry has logged so far.
func (b *bench) countBlobGETs(digests []string) (layers, blobs int, err error) {
	paths := make([]string, len(digests))
	for i, d := range digests {
		paths[i] = "/blobs/" + d
	}
	if len(paths) == 0 {
		return 0, 0, errors.New("no layers to count")
	}
	if layers, err = b.reg.CountRequests("GET", paths[0], paths[1:]...); err != nil {
		return 0, 0, err
	}
	blobs, err = b.reg.CountRequests("GET", "/blobs/")
	return layers, blobs, err
}

// runGzipTar is case (d).
func runGzipTar(ctx context.Context, b *bench, dir string) (measurement, error) {
	dest := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(dest, 0o755); err != nil {
		return measurement{}, err
	}
	argv := []string{b.tools["bash"].Path, "-o", "pipefail", "-c",
		`gzip=$1 tar=$2 dest=$3; shift 3; for blob; do "$gzip" -dc "$blob" | "$tar" --numeric-owner -x -f - -C "$dest" || exit; done`,
		"bench", b.tools["gzip"].Path, b.tools["tar"].Path, dest}
	for i := range b.fixture.Layers {
		argv = append(argv, b.fixture.BlobPath(b.opts.fixtures, i))
	}
	res, err := runTimed(ctx, cmdSpec{argv: argv})
	return measurement{result: res, tree: dest}, err
}

// runPodman is case (e).
func runPodman(ctx context.Context, b *bench, dir string) (measurement, error) {
	args, env, cleanup, err := b.podmanArgs(dir, b.podmanDriver)
	if err != nil {
		return measurement{}, err
	}
	argv, err := sandbox(b, dir, podmanTmpfs, append(args, "pull", "--tls-verify=false", b.ref))
	if err != nil {
		return measurement{}, errors.Join(err, cleanup())
	}
	res, err := runTimed(ctx, cmdSpec{argv: argv, env: env})
	return measurement{result: res}, errors.Join(err, cleanup())
}

// runCrane is case (f).
func runCrane(ctx context.Context, b *bench, dir string) (measurement, error) {
	env, err := tmpEnv(dir)
	if err != nil {
		return measurement{}, err
	}
	dest := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(dest, 0o755); err != nil {
		return measurement{}, err
	}
	argv := []string{b.tools["bash"].Path, "-o", "pipefail", "-c",
		`"$1" export --insecure "$2" - | "$3" --numeric-owner -x -f - -C "$4"`,
		"bench", b.crane, b.ref, b.tools["tar"].Path, dest}
	res, err := runTimed(ctx, cmdSpec{argv: argv, env: env})
	return measurement{result: res, tree: dest}, err
}

// runGunzip is case (g): GNU gzip decompressing the i-th biggest layer to
// /dev/null.
func runGunzip(ctx context.Context, b *bench, i int) (measurement, error) {
	idx := b.fixture.bySize()
	if i >= len(idx) {
		return measurement{}, fmt.Errorf("the fixture has no layer %d", i+1)
	}
	res, err := runTimed(ctx, cmdSpec{argv: []string{b.tools["gzip"].Path, "-dc", b.fixture.BlobPath(b.opts.fixtures, idx[i])}})
	return measurement{result: res}, err
}

// digests returns the layer digests.
func (f *Fixture) digests() []string {
	var ds []string
	for _, l := range f.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

// bySize returns the layer indexes, biggest compressed blob first.
func (f *Fixture) bySize() []int {
	idx := make([]int, len(f.Layers))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, c int) bool { return f.Layers[idx[a]].Size > f.Layers[idx[c]].Size })
	return idx
}

// measure runs the rounds. In round r the cases run in their order rotated
// by r, so no case always comes first or last. A case that fails is not run
// again; it is reported as n/a with its error.
func (b *bench) measure(ctx context.Context, cases []*benchCase) *Report {
	b.loadStart = hostload.Average()
	for _, c := range cases {
		c.res = &CaseResult{ID: c.ID, Title: c.Title, Command: c.Cmd}
		if why := b.unavailable(c); why != "" {
			c.res.Error = why
		}
	}
	for r := 0; r < b.opts.rounds && ctx.Err() == nil; r++ {
		for k := range cases {
			c := cases[(k+r)%len(cases)]
			if c.res.Error != "" || ctx.Err() != nil {
				continue
			}
			b.measureOne(ctx, c, r)
		}
	}
	return b.report(cases)
}

// measureOne runs case c once in a fresh dir and records the result. With
// -fresh-fs the dir is a new ext4 file system of its own, unmounted and
// deleted right after the case (see freshfs.go).
func (b *bench) measureOne(ctx context.Context, c *benchCase, round int) {
	dir, err := os.MkdirTemp(b.work, c.ID+"-")
	if err != nil {
		c.res.Error = err.Error()
		return
	}
	if b.opts.freshFS && !b.opts.keep {
		fs, err := newFreshFS(ctx, dir, 16<<30, c.fs)
		if err != nil {
			c.res.Error = err.Error()
			return
		}
		caseDir := dir
		defer func() {
			syncAll()
			if err := errors.Join(unmountUnder(fs.mnt), fs.close(), os.Remove(caseDir)); err != nil {
				logf("warning: %v", err)
			}
		}()
		dir = fs.mnt
	} else {
		defer func() {
			b.outputs = append(b.outputs, dir)
			syncAll() // write back this case's output before the next one starts
		}()
	}
	m, err := c.run(ctx, b, dir)
	if err != nil {
		if ctx.Err() == nil {
			c.res.Error = err.Error()
			logf("round %d (%s) %s: n/a: %v", round+1, c.ID, c.Title, err)
		}
	} else {
		s := Sample{
			Round: round + 1, Seconds: m.wall.Seconds(), MaxRSSKiB: m.maxRSSKiB,
			UserSeconds: m.user.Seconds(), SysSeconds: m.sys.Seconds(),
			LayerBlobGETs: m.layerGETs, BlobGETs: m.blobGETs, Layers: m.layers, ExtraDiskBytes: m.extraDisk,
		}
		c.res.Samples = append(c.res.Samples, s)
		extra := ""
		if m.layerGETs != nil {
			extra = fmt.Sprintf(", %d layer-blob GETs", *m.layerGETs)
		}
		if m.extraDisk != nil {
			extra += fmt.Sprintf(", %.1f MB of disk", float64(*m.extraDisk)/1e6)
		}
		logf("round %d (%s) %s: %.2f s, peak RSS %s%s", round+1, c.ID, c.Title, s.Seconds, formatKiB(s.MaxRSSKiB), extra)
		if m.tree != "" && c.res.TreeEntries == 0 {
			if n, err := countEntries(m.tree); err == nil {
				c.res.TreeEntries = n
			}
		}
	}
}

// close removes the cases' outputs (unless -keep) and stops the registry.
func (b *bench) close() error {
	var errs []error
	if !b.opts.keep {
		for _, dir := range b.outputs {
			errs = append(errs, removeTree(dir))
		}
	}
	if b.reg != nil {
		errs = append(errs, b.reg.Close())
	}
	return errors.Join(errs...)
}

// hostInfo describes the machine; loadStart is the load average taken
// before the measurements.
func hostInfo(loadStart string) Host {
	h := Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadStart, LoadEnd: hostload.Average()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		h.MemoryBytes = int64(si.Totalram) * int64(si.Unit)
	}
	return h
}

// syncAll writes back everything dirty. The cases write into a file system
// on a loop device, whose writeback dirties the backing file's pages on the
// outer file system: a second sync(2) writes those back too, so no case
// pays for the previous one's writeback.
func syncAll() {
	unix.Sync()
	unix.Sync()
}
