package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/image/unpack"
)

func testLayers() []registry.Layer {
	return []registry.Layer{
		{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}, Size: 2048},
		{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}, Size: 10},
	}
}

func TestPullProgress(t *testing.T) {
	layers := testLayers()
	play := func(p pullProgress) {
		p.Begin("registry.example", layers)
		p.Fetching(0, 2048)
		p.Fetched(0)
		p.Cached(1)
		p.Applying(0, 4096)
		p.Unpacking(0, 4096)
		p.Applied(0, unpack.Stats{Entries: 3, Bytes: 2048})
		p.Applying(1, 0)
		p.Applied(1, unpack.Stats{Entries: 1})
		p.Phase("installing man8s-init")
		p.Done(true)
	}
	tests := []struct {
		name     string
		tty      bool
		quiet    bool
		json     bool
		mode     string
		want     []string
		wantBars bool
	}{
		{name: "pipe: one line per event", want: []string{
			"layer 1/2 sha256:aaaaaaaaaaaa: downloaded 2.0 KiB\n",
			"layer 2/2 sha256:bbbbbbbbbbbb: in the cache\n",
			"layer 1/2 sha256:aaaaaaaaaaaa: unpacked 3 entries, 2.0 KiB\n",
			"layer 2/2 sha256:bbbbbbbbbbbb: unpacked 1 entry, 0 B\n",
			"installing man8s-init\n",
			"took download ",
		}},
		{name: "terminal: bars", tty: true, wantBars: true, want: []string{"layer 1/2 sha256:aaaaaaaaaaaa", "unpack", "took download "}},
		{name: "pipe with --progress=tty: bars", mode: progressTTY, wantBars: true, want: []string{"unpack"}},
		{name: "terminal with --progress=plain: lines", tty: true, mode: progressPlain, want: []string{"layer 1/2 sha256:aaaaaaaaaaaa: downloaded 2.0 KiB\n"}},
		{name: "terminal with --json: lines, no bars", tty: true, json: true, want: []string{
			"layer 1/2 sha256:aaaaaaaaaaaa: downloaded 2.0 KiB\n",
			"layer 1/2 sha256:aaaaaaaaaaaa: unpacked 3 entries, 2.0 KiB\n",
		}},
		{name: "quiet", tty: true, quiet: true},
		{name: "--progress=none", tty: true, mode: progressNone},
		{name: "quiet with --json", tty: true, quiet: true, json: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, errOut := iostreams.Test()
			ios.SetStderrTTY(tt.tty)
			ios.Progress = tt.mode
			p := newPullProgress(ios, tt.quiet, tt.json)
			if _, bars := p.(*barProgress); bars != tt.wantBars {
				t.Errorf("bars = %v, want %v", bars, tt.wantBars)
			}
			play(p)
			for _, w := range tt.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, errOut.String())
				}
			}
			if tt.want == nil && errOut.Len() > 0 {
				t.Errorf("quiet progress printed %q", errOut.String())
			}
			if !tt.wantBars && strings.ContainsAny(errOut.String(), "\x1b\r") {
				t.Errorf("plain progress holds control characters: %q", errOut.String())
			}
		})
	}
}

// fakeClock is a settable clock for pullMeter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestPullMeter(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	m := newPullMeter(clock.now)
	layers := []registry.Layer{{Size: 100 << 20}, {Size: 50 << 20}}
	m.Begin("https://mirror.example/v2", layers)

	// The download rate is that of the last seconds, not the average.
	for range 10 {
		clock.advance(time.Second)
		m.Fetching(0, 1<<20)
	}
	for range 5 {
		clock.advance(time.Second)
		m.Fetching(0, 10<<20)
	}
	if got := m.downloadLine(); !strings.Contains(got, "downloading 60.0 MiB of 150.0 MiB, ") || !strings.Contains(got, "MiB/s") {
		t.Errorf("download line %q", got)
	}
	if r := m.dlRate.perSecond(clock.t); r < 8<<20 {
		t.Errorf("rate %.0f B/s, want the last seconds' ~10 MiB/s", r)
	}
	// A stall is named, with the host.
	clock.advance(12 * time.Second)
	if got, want := m.downloadLine(), "waiting for mirror.example: no data for 12s"; got != want {
		t.Errorf("stalled: %q, want %q", got, want)
	}
	m.Fetching(0, 40<<20)
	m.Fetched(0)
	m.Cached(1)
	if got := m.downloadLine(); !strings.HasPrefix(got, "downloaded 100.0 MiB in ") {
		t.Errorf("after the downloads: %q", got)
	}
	// The unpack moves by bytes, with a rate and a shrinking time left.
	m.Applying(0, 300<<20) // gzip said: 3x
	if got := m.unpackTotal(); got != 450<<20 {
		t.Errorf("estimate %d, want 450 MiB (the second layer guessed at the first's ratio)", got>>20)
	}
	left := func() time.Duration {
		re := regexp.MustCompile(`, ([0-9.ms]+) left`)
		sm := re.FindStringSubmatch(m.unpackLine())
		if sm == nil {
			t.Fatalf("unpack line without time left: %q", m.unpackLine())
		}
		d, err := time.ParseDuration(sm[1])
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	clock.advance(time.Second)
	m.Unpacking(0, 30<<20)
	clock.advance(time.Second)
	m.Unpacking(0, 30<<20)
	first := left()
	clock.advance(time.Second)
	m.Unpacking(0, 30<<20)
	if second := left(); second >= first {
		t.Errorf("time left %s after %s: it should shrink", second, first)
	}
	if got := m.unpackLine(); !strings.HasPrefix(got, "unpacking layer 1/2 (30%), 90.0 MiB of 450.0 MiB, ") {
		t.Errorf("unpack line %q", got)
	}
	m.Unpacking(0, 210<<20)
	m.Applied(0, unpack.Stats{})
	m.Applying(1, 0)
	m.Unpacking(1, 150<<20)
	m.Applied(1, unpack.Stats{})
	m.Phase("installing man8s-init")
	if got := m.unpackLine(); got != "unpacked 2 layers, 450.0 MiB; installing man8s-init" {
		t.Errorf("after the unpack: %q", got)
	}
	clock.advance(2 * time.Second)
	if got := m.summary(); !regexp.MustCompile(`^download 27s, unpack \d.*s, finish 2s$`).MatchString(got) {
		t.Errorf("summary %q", got)
	}
}

// Plain mode repeats where the pull is, at its interval, on lines of
// their own.
func TestLinePullProgressRepeats(t *testing.T) {
	ios, _, _, errOut := iostreams.Test()
	p := newLineProgress(newPullMeter(time.Now), ios.ErrOut)
	p.every = 10 * time.Millisecond
	p.Begin("registry.example", testLayers())
	p.Fetching(0, 1024)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(syncString(p), "downloading 1.0 KiB of 2.0 KiB") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	p.Done(false)
	if out := errOut.String(); !strings.Contains(out, "downloading 1.0 KiB of 2.0 KiB") {
		t.Errorf("no status line:\n%s", out)
	}
}

// syncString reads p's output under its lock.
func syncString(p *lineProgress) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.(interface{ String() string }).String()
}

func TestProgressFlag(t *testing.T) {
	env := noConfig(t, "")
	if code, _, stderr := runCLI(t, env, "--progress=fancy", "config", "show"); code != exitUsage || !strings.Contains(stderr, "want one of auto, tty, plain, none") {
		t.Errorf("--progress=fancy: %d %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, env, "config", "show", "--progress", "plain"); code != 0 {
		t.Errorf("--progress plain after the verb: %d %q", code, stderr)
	}
}
