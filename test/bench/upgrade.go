package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// The upgrade cases (u1 to u4) take a machine from version 1 of an app
// image to version 2, which differs in its small top layer only. The
// images are pushed to fixtureRepo, where the fixture's blobs already are,
// under these tags; case u1 and u4 move appStableTag from v1 to v2.
const (
	appV1Tag     = "app-v1"
	appV2Tag     = "app-v2"
	appStableTag = "app-stable"
	appLayerTag  = "app-layer-v2" // v2's app layer alone
)

// benchMachine is the name of the machine (and podman container) the
// upgrade cases make.
const benchMachine = "bench"

// appTrees are the dirs of -gotree that make the app layer, at /opt/app:
// with Go 1.26, 7.3 MB of sources in about 630 entries, 1.9 MB compressed.
var appTrees = []string{"src/net", "src/encoding"}

// appImages are the upgrade cases' images: the fixture's three layers with
// an app layer on top, in two versions that differ in the app layer (its
// VERSION file) and in the config (APP_VERSION), and v2's app layer alone.
type appImages struct {
	v1, v2 v1.Image
	desc   AppImage
}

// AppImage describes the upgrade cases' images in the report.
type AppImage struct {
	Repo        string `json:"repo"`
	V1Digest    string `json:"v1_digest"`
	V2Digest    string `json:"v2_digest"`
	LayerDigest string `json:"changed_layer_image_digest"`
	// Layers are v1's and v2's app layers.
	Layers []LayerInfo `json:"app_layers"`
}

// appRef returns the reference of tag in the upgrade cases' repository.
func (b *bench) appRef(tag string) string {
	return b.reg.Addr() + "/" + fixtureRepo + ":" + tag
}

// pushApp writes the two versions of the app layer into the run's dir and
// pushes the upgrade cases' images. Only the app layers are uploaded: the
// fixture's blobs are in the repository already.
func (b *bench) pushApp(ctx context.Context) error {
	start := time.Now()
	dir := filepath.Join(b.work, "app")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	a := &appImages{desc: AppImage{Repo: b.reg.Addr() + "/" + fixtureRepo}}
	var apps []v1.Layer
	for _, ver := range []string{"1", "2"} {
		p := filepath.Join(dir, "app-v"+ver+".tar.gz")
		li, err := writeLayer(ctx, p, newTreeStats(), func(lw *layerWriter) error {
			return writeAppLayer(lw, b.opts.goTree, ver)
		})
		if err != nil {
			return fmt.Errorf("app layer v%s: %w", ver, err)
		}
		li.What = fmt.Sprintf("app v%s: %s of %s at /opt/app", ver, strings.Join(appTrees, ", "), b.opts.goTree)
		a.desc.Layers = append(a.desc.Layers, li)
		l, err := tarball.LayerFromFile(p, tarball.WithMediaType(types.DockerLayer))
		if err != nil {
			return fmt.Errorf("reading app layer v%s: %w", ver, err)
		}
		apps = append(apps, l)
	}
	config := func(ver string) ociimage.AppConfig {
		return ociimage.AppConfig{Cmd: []string{"/bin/bash"}, Env: []string{ociimage.DefaultPath, "APP_VERSION=" + ver}}
	}
	var err error
	if a.v1, err = ociimage.Image(config("1"), append(slices.Clone(b.layers), apps[0])...); err != nil {
		return err
	}
	if a.v2, err = ociimage.Image(config("2"), append(slices.Clone(b.layers), apps[1])...); err != nil {
		return err
	}
	alone, err := ociimage.Image(config("2"), apps[1])
	if err != nil {
		return err
	}
	for _, p := range []struct {
		img    v1.Image
		tag    string
		digest *string
	}{
		{a.v1, appV1Tag, &a.desc.V1Digest},
		{a.v2, appV2Tag, &a.desc.V2Digest},
		{alone, appLayerTag, &a.desc.LayerDigest},
	} {
		d, err := ociimage.Push(ctx, p.img, b.appRef(p.tag))
		if err != nil {
			return err
		}
		*p.digest = d.String()
	}
	b.app = a
	l := a.desc.Layers[1]
	logf("pushed the upgrade images (app layer %s gz, %s tar) in %s", mb(l.Size), mb(l.TarSize), since(start))
	return nil
}

// writeAppLayer writes version ver of the app layer: appTrees of goTree
// under /opt/app and a VERSION file.
func writeAppLayer(lw *layerWriter, goTree, ver string) error {
	for _, d := range []string{"opt", "opt/app"} {
		if err := lw.dir(d, 0o755); err != nil {
			return err
		}
	}
	for _, t := range appTrees {
		if err := lw.addTree(filepath.Join(goTree, t), path.Join("opt/app", path.Base(t)), nil); err != nil {
			return err
		}
	}
	return lw.file("opt/app/VERSION", 0o644, "app v"+ver+"\n")
}

// v2Layers returns the layer digests of version 2.
func (a *appImages) v2Layers() ([]string, error) {
	ls, err := a.v2.Layers()
	if err != nil {
		return nil, err
	}
	var ds []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		ds = append(ds, d.String())
	}
	return ds, nil
}

// tagApp points appStableTag at img.
func (b *bench) tagApp(ctx context.Context, img v1.Image) error {
	_, err := ociimage.Push(ctx, img, b.appRef(appStableTag))
	return err
}

// machineRootfs is where the machines cases' machine has its rootfs.
func machineRootfs(dir string) string {
	return filepath.Join(dir, "mbctl", "machines", benchMachine)
}

// runUpgrade is case u1: untimed, a machine is pulled from appStableTag at
// v1 and the tag moved to v2; timed, `mbctl -v machines upgrade` of the
// stopped machine. The registry's access log counts the layer GETs of the
// upgrade, mbctl's log gives the layers' timings.
func runUpgrade(ctx context.Context, b *bench, dir string) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	if err := b.tagApp(ctx, b.app.v1); err != nil {
		return measurement{}, err
	}
	pull, err := mbctlCommand(b, conf, dir, "machines", "pull", "--yes", "--quiet", b.appRef(appStableTag), benchMachine)
	if err != nil {
		return measurement{}, err
	}
	if _, err := runTimed(ctx, pull); err != nil {
		return measurement{}, fmt.Errorf("pulling the machine at v1: %w", err)
	}
	if err := b.tagApp(ctx, b.app.v2); err != nil {
		return measurement{}, err
	}
	syncAll()

	digests, err := b.app.v2Layers()
	if err != nil {
		return measurement{}, err
	}
	layersBefore, blobsBefore, err := b.countBlobGETs(digests)
	if err != nil {
		return measurement{}, err
	}
	spec, err := mbctlCommand(b, conf, dir, "-v", "machines", "upgrade", "--yes", "--quiet", benchMachine)
	if err != nil {
		return measurement{}, err
	}
	spec.log = filepath.Join(dir, "upgrade.log")
	res, err := runTimed(ctx, spec)
	if err != nil {
		return measurement{result: res}, err
	}
	layersAfter, blobsAfter, err := b.countBlobGETs(digests)
	if err != nil {
		return measurement{}, err
	}
	timings, err := readLayerLog(spec.log)
	if err != nil {
		return measurement{}, err
	}
	layers, blobs := layersAfter-layersBefore, blobsAfter-blobsBefore
	return measurement{result: res, tree: machineRootfs(dir), layerGETs: &layers, blobGETs: &blobs, layers: timings}, nil
}

// runFreshPull is case u2: `mbctl -v machines pull` of v2 into a new
// machine with an empty cache.
func runFreshPull(ctx context.Context, b *bench, dir string) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	spec, err := mbctlCommand(b, conf, dir, "-v", "machines", "pull", "--yes", "--quiet", b.appRef(appV2Tag), benchMachine)
	if err != nil {
		return measurement{}, err
	}
	spec.log = filepath.Join(dir, "pull.log")
	res, err := runTimed(ctx, spec)
	if err != nil {
		return measurement{result: res}, err
	}
	timings, err := readLayerLog(spec.log)
	if err != nil {
		return measurement{}, err
	}
	return measurement{result: res, tree: machineRootfs(dir), layers: timings}, nil
}

// runChangedLayer is case u3: `mbctl oci download` of an image made of
// v2's app layer alone, empty cache: the download and unpacking of the
// changed layer by itself.
func runChangedLayer(ctx context.Context, b *bench, dir string) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	dest := filepath.Join(dir, "rootfs")
	spec, err := mbctlDownload(b, conf, dir, b.appRef(appLayerTag), dest)
	if err != nil {
		return measurement{}, err
	}
	res, err := runTimed(ctx, spec)
	return measurement{result: res, tree: dest}, err
}

// runPodmanRecreate is case u4, what `podman auto-update` does for a
// container: untimed, the container is created from appStableTag at v1
// and the tag moved to v2; timed, podman pulls the tag and the container
// is removed and created again from the new image.
func runPodmanRecreate(ctx context.Context, b *bench, dir string) (_ measurement, retErr error) {
	args, env, cleanup, err := b.podmanArgs(dir, b.podmanDriver)
	if err != nil {
		return measurement{}, err
	}
	defer func() { retErr = errors.Join(retErr, cleanup()) }()
	// podman's locks (/dev/shm/libpod_lock) and runtime state (/run) must
	// outlive each command: dirs of the case, bound there every time.
	run, shm := filepath.Join(dir, "sandbox-run"), filepath.Join(dir, "sandbox-shm")
	for _, d := range []string{run, shm} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return measurement{}, err
		}
	}
	if err := os.Chmod(shm, 0o1777); err != nil {
		return measurement{}, err
	}
	mounts := []string{"/run:" + run, "/dev/shm:" + shm}
	podman := func(a ...string) (cmdSpec, error) {
		argv, err := sandbox(b, dir, mounts, append(slices.Clone(args), a...))
		return cmdSpec{argv: argv, env: env}, err
	}
	ref := b.appRef(appStableTag)
	pull, err1 := podman("pull", "--tls-verify=false", ref)
	rm, err2 := podman("rm", benchMachine)
	create, err3 := podman("create", "--name", benchMachine, "--network", "none", "--pull", "never", ref)
	if err := errors.Join(err1, err2, err3); err != nil {
		return measurement{}, err
	}

	if err := b.tagApp(ctx, b.app.v1); err != nil {
		return measurement{}, err
	}
	if _, err := runTimed(ctx, pull, create); err != nil {
		return measurement{}, fmt.Errorf("creating the container at v1: %w", err)
	}
	if err := b.tagApp(ctx, b.app.v2); err != nil {
		return measurement{}, err
	}
	syncAll()

	digests, err := b.app.v2Layers()
	if err != nil {
		return measurement{}, err
	}
	layersBefore, blobsBefore, err := b.countBlobGETs(digests)
	if err != nil {
		return measurement{}, err
	}
	res, err := runTimed(ctx, pull, rm, create)
	if err != nil {
		return measurement{result: res}, err
	}
	layersAfter, blobsAfter, err := b.countBlobGETs(digests)
	if err != nil {
		return measurement{}, err
	}
	layers, blobs := layersAfter-layersBefore, blobsAfter-blobsBefore
	return measurement{result: res, layerGETs: &layers, blobGETs: &blobs}, nil
}

// LayerTiming is what `mbctl -v` logged of one layer of a pull: how long
// its download took (none: it came from the cache), how long the applier
// waited for the layer's stream, and how long applying it took. The
// download of a layer overlaps with the application of the layers before
// it; the waits and applications follow one another.
type LayerTiming struct {
	Layer           int     `json:"layer"`
	DownloadSeconds float64 `json:"download_seconds,omitempty"`
	DownloadBytes   int64   `json:"download_bytes,omitempty"`
	WaitSeconds     float64 `json:"wait_seconds"`
	ApplySeconds    float64 `json:"apply_seconds"`
}

// readLayerLog reads the layer timings from the log file at p.
func readLayerLog(p string) ([]LayerTiming, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ts, err := parseLayerLog(f)
	if err != nil {
		return nil, fmt.Errorf("reading mbctl's log %s: %w", p, err)
	}
	return ts, nil
}

// parseLayerLog returns the timings of the layers in mbctl -v's log lines
// "layer downloaded" (layer, bytes, took) and "layer applied" (layer,
// waited, took), ordered by layer. Other lines are skipped.
func parseLayerLog(r io.Reader) ([]LayerTiming, error) {
	byLayer := map[int]*LayerTiming{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := logFields(sc.Text())
		msg := f["msg"]
		if msg != "layer downloaded" && msg != "layer applied" {
			continue
		}
		n, err := strconv.Atoi(f["layer"])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q line without a layer number: %q", msg, sc.Text())
		}
		t := byLayer[n]
		if t == nil {
			t = &LayerTiming{Layer: n}
			byLayer[n] = t
		}
		var errs []error
		dur := func(key string) float64 {
			d, err := time.ParseDuration(f[key])
			errs = append(errs, err)
			return d.Seconds()
		}
		if msg == "layer downloaded" {
			t.DownloadSeconds = dur("took")
			t.DownloadBytes, err = strconv.ParseInt(f["bytes"], 10, 64)
			errs = append(errs, err)
		} else {
			t.WaitSeconds, t.ApplySeconds = dur("waited"), dur("took")
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("%q line: %w: %q", msg, err, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make([]LayerTiming, 0, len(byLayer))
	for _, t := range byLayer {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Layer < out[j].Layer })
	return out, nil
}

// logFields splits a line of slog's text handler (key=value, a value
// quoted when it holds a blank) into its fields. It stops at what is not
// a field, so a line that is no log line gives few or none.
func logFields(line string) map[string]string {
	f := map[string]string{}
	for {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \"") {
			return f
		}
		v := rest
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return f
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		f[k] = v
		line = rest
	}
}

// Breakdown is where a machines case's time went, from mbctl's layer
// lines: medians of the rounds that have them.
type Breakdown struct {
	// Layers are the layers' median timings.
	Layers []LayerTiming `json:"layers"`
	// UnpackSeconds runs from the applier's wait for the first layer to
	// the last layer applied (the sum of waits and applications).
	UnpackSeconds float64 `json:"unpack_seconds"`
	// RestSeconds is the wall clock less UnpackSeconds: the process,
	// resolving the image, man8s-init, the machine's files, the swap.
	RestSeconds float64 `json:"rest_seconds"`
}

// breakdown returns the medians of c's layer timings, or nil when no round
// has any.
func (c *CaseResult) breakdown() *Breakdown {
	var unpack, rest []float64
	perLayer := map[int][]LayerTiming{}
	for _, s := range c.Samples {
		if len(s.Layers) == 0 {
			continue
		}
		u := 0.0
		for _, l := range s.Layers {
			u += l.WaitSeconds + l.ApplySeconds
			perLayer[l.Layer] = append(perLayer[l.Layer], l)
		}
		unpack = append(unpack, u)
		rest = append(rest, s.Seconds-u)
	}
	if len(unpack) == 0 {
		return nil
	}
	bd := &Breakdown{UnpackSeconds: median(unpack), RestSeconds: median(rest)}
	for n, ls := range perLayer {
		field := func(get func(LayerTiming) float64) float64 {
			xs := make([]float64, len(ls))
			for i, l := range ls {
				xs[i] = get(l)
			}
			return median(xs)
		}
		bd.Layers = append(bd.Layers, LayerTiming{
			Layer:           n,
			DownloadSeconds: field(func(l LayerTiming) float64 { return l.DownloadSeconds }),
			DownloadBytes:   int64(field(func(l LayerTiming) float64 { return float64(l.DownloadBytes) })),
			WaitSeconds:     field(func(l LayerTiming) float64 { return l.WaitSeconds }),
			ApplySeconds:    field(func(l LayerTiming) float64 { return l.ApplySeconds }),
		})
	}
	sort.Slice(bd.Layers, func(i, j int) bool { return bd.Layers[i].Layer < bd.Layers[j].Layer })
	return bd
}
