// Command bench measures how fast `mbctl oci download` pulls and unpacks a
// realistic image, and how fast `mbctl machines upgrade` takes a machine
// to a version of it where one small layer changed, next to the tools they
// replace, in one run:
//
//	go run ./test/bench [-rounds 3] [-only a,b,...] [-json FILE]
//
// It builds (once, cached in -fixtures) a three-layer image: a Debian
// minbase rootfs made by debootstrap, a Go toolchain tree, and a layer of
// whiteouts and small additions. Each run starts the real registry on
// 127.0.0.1, pushes the image and two versions of it with a small app
// layer on top (the upgrade cases, upgrade.go), and times each case into a
// fresh directory, the cases alternating within every round. It prints
// each case's rounds and median and the ratios that the performance goals
// of issues 6 and 13 are about.
// See README.md. Run it as root: the extracting tools keep file ownership
// only as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	rounds       int
	fixtures     string
	workDir      string
	mbctl        string
	crane        string
	only         string
	keep         bool
	jsonPath     string
	mirror       string
	goTree       string
	rebuild      bool
	freshFS      bool
	podmanDriver string
}

func main() {
	if os.Getenv(rusageEnv) != "" {
		os.Exit(rusageWrapper(os.Args[1:]))
	}
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; every case runs once per round and the median is reported")
	flag.StringVar(&o.fixtures, "fixtures", "/var/tmp/mbctl-bench", "where the fixture image's layer blobs are built once and kept")
	flag.StringVar(&o.workDir, "workdir", "/var/tmp", "where each run's temporary dirs go (registry storage, outputs, caches)")
	flag.StringVar(&o.mbctl, "mbctl", "", "the mbctl binary to measure (default: go build ./cmd/mbctl into the run's temp dir, pure Go; make bench passes bin/mbctl, built with ISA-L when libisal-dev is installed)")
	flag.StringVar(&o.crane, "crane", "", "the crane binary for case (f) (default: go install go-containerregistry's cmd/crane at the version of go.mod into the run's temp dir)")
	flag.StringVar(&o.only, "only", "", "comma-separated cases to run, e.g. a,b,d (g selects g1 and g2, u the upgrade cases u1 to u4, p the progress cases p0 and p1, s the second-machine cases s0 to s4); default all")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's temp dir with every output tree for inspection (about 0.5 GB per case and round)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.mirror, "mirror", "", "Debian mirror for debootstrap (default: the one apt's sources use for "+fixtureSuite+")")
	flag.StringVar(&o.goTree, "gotree", "/usr/local/go", "the many-file tree (a Go toolchain) of layer 2, placed at /usr/local/go")
	flag.BoolVar(&o.freshFS, "fresh-fs", true, "run every case in a new ext4 file system on a loop device, deleted after it (repeatable figures; see freshfs.go)")
	flag.BoolVar(&o.rebuild, "rebuild", false, "rebuild the fixture even if a usable one is present")
	flag.StringVar(&o.podmanDriver, "podman-driver", "auto", "podman storage driver for case (e): overlay, vfs, or auto (overlay if it works here, else vfs)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// logf writes a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, o options) (retErr error) {
	if o.rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1")
	}
	cases, err := selectCases(allCases(), o.only)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		logf("warning: not root: tar and umoci cannot keep file ownership, podman and debootstrap will fail")
	}
	for _, p := range []*string{&o.fixtures, &o.workDir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return err
	}

	start := time.Now()
	fix, built, err := ensureFixture(ctx, fixtureOptions{
		dir: o.fixtures, mirror: o.mirror, goTree: o.goTree, rebuild: o.rebuild, logf: logf,
	})
	if err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	if built {
		logf("fixture built in %s", since(start))
	}

	work, err := os.MkdirTemp(o.workDir, "mbctl-bench-run-")
	if err != nil {
		return err
	}
	b := &bench{opts: o, started: start.UTC().Truncate(time.Second), work: work, fixture: fix, fixtureBuilt: built, tools: map[string]toolInfo{}}
	defer func() {
		err := b.close()
		if o.keep {
			logf("kept %s", work)
		} else {
			err = errors.Join(err, removeTree(work))
		}
		retErr = errors.Join(retErr, err)
	}()
	if same, err := sameFilesystem(o.workDir, o.fixtures); err == nil && !same {
		logf("note: %s and %s are on different filesystems", o.workDir, o.fixtures)
	}

	if err := b.setup(ctx, cases); err != nil {
		return errors.New("interrupted")
	}
	rep := b.measure(ctx, cases)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	printReport(os.Stdout, rep)
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rep); err != nil {
			return err
		}
		logf("results written to %s", o.jsonPath)
	}
	return nil
}

// selectCases returns the cases named in only ("" means all).
func selectCases(all []*benchCase, only string) ([]*benchCase, error) {
	if strings.TrimSpace(only) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, id := range strings.Split(only, ",") {
		id = strings.Trim(strings.TrimSpace(strings.ToLower(id)), "()")
		if id == "" {
			continue
		}
		found := false
		for _, c := range all {
			if c.ID == id || strings.TrimRight(c.ID, "0123456789") == id {
				want[c.ID], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("-only: unknown case %q (cases: a b c d e f g g1 g2 u u1 u2 u3 u4 p p0 p1 s s0 s1 s2 s3 s4)", id)
		}
	}
	var sel []*benchCase
	for _, c := range all {
		if want[c.ID] {
			sel = append(sel, c)
		}
	}
	return sel, nil
}
