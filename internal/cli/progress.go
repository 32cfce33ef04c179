package cli

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/image/unpack"
)

// newPullProgress returns how a pull reports progress on ios's stderr:
// nothing when quiet; one line per layer event when stderr is no terminal
// or when the output is JSON (bars are for a person watching a human
// summary); bars otherwise.
func newPullProgress(ios *iostreams.IOStreams, quiet, jsonOut bool) pullProgress {
	switch {
	case quiet:
		return quietProgress{}
	case ios.IsStderrTTY() && !jsonOut:
		return &barProgress{out: ios.ErrOut}
	default:
		return &lineProgress{out: ios.ErrOut}
	}
}

// pullProgress is a pull.Progress that must be told when the pull is over.
type pullProgress interface {
	pull.Progress
	// Done stops the display; ok says whether the pull succeeded.
	Done(ok bool)
}

// quietProgress shows nothing.
type quietProgress struct{ pull.NopProgress }

func (quietProgress) Done(bool) {}

// lineProgress writes one stable line per layer event, for logs and pipes.
type lineProgress struct {
	pull.NopProgress
	out    io.Writer
	mu     sync.Mutex
	layers []registry.Layer
}

func (p *lineProgress) Begin(layers []registry.Layer) { p.layers = layers }

func (p *lineProgress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format, args...)
}

func (p *lineProgress) layer(i int) string {
	return fmt.Sprintf("layer %d/%d %s", i+1, len(p.layers), shortDigest(p.layers[i].Digest.String()))
}

func (p *lineProgress) Cached(i int) { p.printf("%s: in the cache\n", p.layer(i)) }
func (p *lineProgress) Fetched(i int) {
	p.printf("%s: downloaded %s\n", p.layer(i), humanBytes(p.layers[i].Size))
}
func (p *lineProgress) Done(bool) {}
func (p *lineProgress) Applied(i int, st unpack.Stats) {
	p.printf("%s: unpacked %d %s, %s\n", p.layer(i), st.Entries, plural(st.Entries, "entry", "entries"), humanBytes(st.Bytes))
}

// barProgress shows a download bar per layer and, below them, how many
// layers are unpacked and the overall download speed.
type barProgress struct {
	out        io.Writer
	p          *mpb.Progress
	bars       []*mpb.Bar
	unpacked   *mpb.Bar
	downloaded atomic.Int64
	layers     []registry.Layer
}

func (p *barProgress) Begin(layers []registry.Layer) {
	p.layers = layers
	p.p = mpb.New(mpb.WithOutput(p.out), mpb.WithWidth(32), mpb.WithAutoRefresh())
	for i, l := range layers {
		p.bars = append(p.bars, p.p.AddBar(l.Size,
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("layer %d/%d %s ", i+1, len(layers), shortDigest(l.Digest.String())))),
			mpb.AppendDecorators(
				decor.OnComplete(decor.CountersKibiByte("% .1f / % .1f  "), "done"),
				decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), ""),
			),
		))
	}
	start := time.Now()
	p.unpacked = p.p.AddBar(int64(len(layers)),
		mpb.PrependDecorators(decor.Name("unpacked "), decor.CountersNoUnit("%d/%d layers ")),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			n := p.downloaded.Load()
			perSecond := int64(float64(n) / max(time.Since(start).Seconds(), 0.001))
			return fmt.Sprintf("%s downloaded, %s/s", humanBytes(n), humanBytes(perSecond))
		})),
	)
}

func (p *barProgress) Fetching(i int, n int64) {
	p.downloaded.Add(n)
	p.bars[i].IncrInt64(n)
	p.unpacked.EwmaIncrInt64(0, 0)
}

func (p *barProgress) Cached(i int) { p.bars[i].SetCurrent(p.layers[i].Size) }

func (p *barProgress) Fetched(i int) { p.bars[i].SetCurrent(p.layers[i].Size) }

func (p *barProgress) Applied(int, unpack.Stats) { p.unpacked.Increment() }

func (p *barProgress) Done(ok bool) {
	if p.p == nil {
		return
	}
	for _, b := range append(p.bars, p.unpacked) {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	p.p.Wait()
}

func shortDigest(d string) string {
	const n = len("sha256:") + 12
	if len(d) > n {
		return d[:n]
	}
	return d
}

// humanBytes formats n in binary units, as the bars do.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
