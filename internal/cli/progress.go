package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/image/unpack"
)

// Progress modes (--progress), as in docker buildx.
const (
	progressAuto  = "auto"  // bars on a terminal, plain lines elsewhere
	progressTTY   = "tty"   // bars
	progressPlain = "plain" // lines at a bounded rate, no control characters
	progressNone  = "none"  // nothing (-q)
)

// progressModes are the values --progress takes.
func progressModes() []string {
	return []string{progressAuto, progressTTY, progressPlain, progressNone}
}

// progressFlag is the --progress value: it refuses what it does not know
// when the flags are parsed.
type progressFlag struct{ ios *iostreams.IOStreams }

func (f progressFlag) String() string {
	if f.ios == nil || f.ios.Progress == "" {
		return progressAuto
	}
	return f.ios.Progress
}

func (f progressFlag) Set(s string) error {
	for _, m := range progressModes() {
		if s == m {
			f.ios.Progress = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(progressModes(), ", "))
}

func (progressFlag) Type() string { return "mode" }

// Timings of a display.
const (
	// plainEvery is how often plain mode repeats where a pull is.
	plainEvery = 10 * time.Second
	// stallAfter is how long no byte may come before a download is said
	// to be waiting.
	stallAfter = 5 * time.Second
	// rateWindow is how far back a rate looks.
	rateWindow = 5 * time.Second
)

// newPullProgress returns how a pull reports progress on ios's stderr,
// by ios.Progress: nothing when quiet or "none"; bars on a terminal
// ("auto") or always ("tty"); plain lines otherwise, and when the output
// is JSON in "auto" (bars are for a person watching a human summary).
func newPullProgress(ios *iostreams.IOStreams, quiet, jsonOut bool) pullProgress {
	mode := ios.Progress
	if mode == "" {
		mode = progressAuto
	}
	m := newPullMeter(time.Now)
	switch {
	case quiet || mode == progressNone:
		return quietProgress{}
	case mode == progressTTY || mode == progressAuto && ios.IsStderrTTY() && !jsonOut:
		return &barProgress{pullMeter: m, out: ios.ErrOut}
	default:
		return newLineProgress(m, ios.ErrOut)
	}
}

// pullProgress is a pull.Progress that must be told when the pull is over,
// and of the phases that follow the unpack.
type pullProgress interface {
	pull.Progress
	// Phase says what the run does now ("installing man8s-init").
	Phase(what string)
	// Done stops the display; ok says whether the pull succeeded.
	Done(ok bool)
}

// quietProgress shows nothing.
type quietProgress struct{ pull.NopProgress }

func (quietProgress) Phase(string) {}
func (quietProgress) Done(bool)    {}

// rate is a byte rate over the last rateWindow.
type rate struct {
	samples []sample
}

type sample struct {
	t time.Time
	n int64 // bytes so far
}

func (r *rate) add(t time.Time, total int64) {
	r.samples = append(r.samples, sample{t, total})
	cut := 0
	for cut < len(r.samples)-2 && t.Sub(r.samples[cut+1].t) > rateWindow {
		cut++
	}
	r.samples = r.samples[cut:]
}

// perSecond is the rate at now: 0 when no byte came within the window.
func (r *rate) perSecond(now time.Time) float64 {
	if len(r.samples) < 2 {
		return 0
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	if now.Sub(last.t) > rateWindow {
		return 0
	}
	d := now.Sub(first.t).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(last.n-first.n) / d
}

// pullMeter is what both displays know of a pull: bytes downloaded and
// unpacked, their rates over the last seconds, stalls, the phase, and when
// each part ended. It is safe for concurrent use.
type pullMeter struct {
	mu  sync.Mutex
	now func() time.Time

	source string
	layers []registry.Layer
	start  time.Time

	fetched      []bool
	downloaded   int64
	toDownload   int64
	lastByte     time.Time
	downloadsEnd time.Time
	dlRate       rate

	// est is each layer's tar size: known from its blob, or guessed from
	// its compressed size; unpacked what of it is applied.
	est        []int64
	known      []bool
	unpacked   []int64
	applied    int
	applying   int
	unpackEnd  time.Time
	upRate     rate
	upTotal    int64 // bytes unpacked, all layers
	phase      string
	phaseStart time.Time
}

func newPullMeter(now func() time.Time) *pullMeter {
	return &pullMeter{now: now, applying: -1}
}

func (m *pullMeter) Begin(source string, layers []registry.Layer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.source, m.layers, m.start = source, layers, m.now()
	m.lastByte = m.start
	m.fetched = make([]bool, len(layers))
	m.est, m.known, m.unpacked = make([]int64, len(layers)), make([]bool, len(layers)), make([]int64, len(layers))
	for _, l := range layers {
		m.toDownload += l.Size
	}
	m.guess()
}

// guess fills in the tar sizes not known yet, by the ratio of those known
// (or 2, a usual gzip ratio for a rootfs).
func (m *pullMeter) guess() {
	var tar, comp int64
	for i, l := range m.layers {
		if m.known[i] {
			tar += m.est[i]
			comp += l.Size
		}
	}
	ratio := 2.0
	if comp > 0 {
		ratio = float64(tar) / float64(comp)
	}
	for i, l := range m.layers {
		if !m.known[i] {
			m.est[i] = max(int64(float64(l.Size)*ratio), m.unpacked[i])
		}
	}
}

func (m *pullMeter) fetchedLocked(i int) {
	if m.fetched[i] {
		return
	}
	m.fetched[i] = true
	for _, f := range m.fetched {
		if !f {
			return
		}
	}
	m.downloadsEnd = m.now()
}

func (m *pullMeter) Cached(i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.toDownload -= m.layers[i].Size
	m.fetchedLocked(i)
}

func (m *pullMeter) Fetching(i int, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.downloaded += n
	m.lastByte = now
	m.dlRate.add(now, m.downloaded)
}

func (m *pullMeter) Fetched(i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetchedLocked(i)
}

func (m *pullMeter) Applying(i int, size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applying = i
	if size > 0 {
		m.est[i], m.known[i] = size, true
	}
	m.guess()
	m.upRate.add(m.now(), m.upTotal)
}

func (m *pullMeter) Unpacking(i int, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unpacked[i] += n
	m.upTotal += n
	if m.unpacked[i] > m.est[i] {
		m.est[i] = m.unpacked[i]
	}
	m.upRate.add(m.now(), m.upTotal)
}

func (m *pullMeter) Applied(i int, _ unpack.Stats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// What was read is the layer's size now.
	m.est[i], m.known[i] = m.unpacked[i], true
	m.applied++
	m.applying = -1
	m.guess()
	if m.applied == len(m.layers) {
		m.unpackEnd = m.now()
	}
}

func (m *pullMeter) Phase(what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.phase, m.phaseStart = what, m.now()
}

// unpackTotal is the estimated size of all tar streams.
func (m *pullMeter) unpackTotal() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t int64
	for _, e := range m.est {
		t += e
	}
	return t
}

// downloadLine says where the downloads are: bytes and the rate of the
// last seconds while they run, a stall when no byte came for a while,
// their total and time once they are done.
func (m *pullMeter) downloadLine() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if !m.downloadsEnd.IsZero() {
		if m.downloaded == 0 {
			return "all layers in the cache"
		}
		return fmt.Sprintf("downloaded %s in %s", humanBytes(m.downloaded), roundDuration(m.downloadsEnd.Sub(m.start)))
	}
	if idle := now.Sub(m.lastByte); idle >= stallAfter {
		return fmt.Sprintf("waiting for %s: no data for %s", hostOf(m.source), roundDuration(idle))
	}
	return fmt.Sprintf("downloading %s of %s, %s/s", humanBytes(m.downloaded), humanBytes(m.toDownload), humanBytes(int64(m.dlRate.perSecond(now))))
}

// unpackLine says where the unpack is: the layer, the bytes of tar applied
// of the estimate, the rate of the last seconds and the time left.
func (m *pullMeter) unpackLine() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var total int64
	for _, e := range m.est {
		total += e
	}
	if !m.unpackEnd.IsZero() {
		s := fmt.Sprintf("unpacked %d %s, %s", len(m.layers), plural(len(m.layers), "layer", "layers"), humanBytes(m.upTotal))
		if m.phase != "" {
			s += "; " + m.phase
		}
		return s
	}
	layer := m.applying
	if layer < 0 {
		layer = m.applied
	}
	s := fmt.Sprintf("unpacking layer %d/%d", min(layer+1, len(m.layers)), len(m.layers))
	if layer < len(m.layers) && m.est[layer] > 0 {
		s += fmt.Sprintf(" (%d%%)", min(100, m.unpacked[layer]*100/m.est[layer]))
	}
	s += fmt.Sprintf(", %s of %s", humanBytes(m.upTotal), humanBytes(total))
	if r := m.upRate.perSecond(now); r > 0 {
		s += fmt.Sprintf(", %s/s, %s left", humanBytes(int64(r)), roundDuration(time.Duration(float64(max(total-m.upTotal, 0))/r*float64(time.Second))))
	}
	return s
}

// summary is the time of each part: the download, the unpack after it,
// and what followed.
func (m *pullMeter) summary() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.start.IsZero() {
		return ""
	}
	end := m.now()
	dl := m.downloadsEnd
	if dl.IsZero() {
		dl = end
	}
	up := m.unpackEnd
	if up.IsZero() {
		up = end
	}
	return fmt.Sprintf("download %s, unpack %s, finish %s", roundDuration(dl.Sub(m.start)), roundDuration(max(up.Sub(dl), 0)), roundDuration(max(end.Sub(up), 0)))
}

// hostOf names the registry of an endpoint ("https://mirror.example" →
// "mirror.example").
func hostOf(source string) string {
	if source == "" {
		return "the registry"
	}
	s := strings.TrimPrefix(strings.TrimPrefix(source, "https://"), "http://")
	host, _, _ := strings.Cut(s, "/")
	return host
}

func roundDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// lineProgress writes stable lines for logs and pipes: one per layer event
// and phase, and where the pull is every plainEvery; never a control
// character.
type lineProgress struct {
	*pullMeter
	out io.Writer
	// every is how often the status repeats (plainEvery; tests shorten it).
	every time.Duration
	mu    sync.Mutex
	stop  chan struct{}
	done  sync.WaitGroup
}

func newLineProgress(m *pullMeter, out io.Writer) *lineProgress {
	return &lineProgress{pullMeter: m, out: out, every: plainEvery}
}

func (p *lineProgress) Begin(source string, layers []registry.Layer) {
	p.pullMeter.Begin(source, layers)
	p.stop = make(chan struct{})
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.status()
			}
		}
	}()
}

// status prints where the pull is.
func (p *lineProgress) status() {
	p.pullMeter.mu.Lock()
	downloading, unpacking := p.downloadsEnd.IsZero(), p.unpackEnd.IsZero()
	p.pullMeter.mu.Unlock()
	switch {
	case downloading:
		p.printf("%s; %s\n", p.downloadLine(), p.unpackLine())
	case unpacking:
		p.printf("%s\n", p.unpackLine())
	}
}

func (p *lineProgress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format, args...)
}

func (p *lineProgress) layer(i int) string {
	return fmt.Sprintf("layer %d/%d %s", i+1, len(p.layers), shortDigest(p.layers[i].Digest.String()))
}

func (p *lineProgress) Cached(i int) {
	p.pullMeter.Cached(i)
	p.printf("%s: in the cache\n", p.layer(i))
}

func (p *lineProgress) Fetched(i int) {
	p.pullMeter.Fetched(i)
	p.printf("%s: downloaded %s\n", p.layer(i), humanBytes(p.layers[i].Size))
}

func (p *lineProgress) Applied(i int, st unpack.Stats) {
	p.pullMeter.Applied(i, st)
	p.printf("%s: unpacked %d %s, %s\n", p.layer(i), st.Entries, plural(st.Entries, "entry", "entries"), humanBytes(st.Bytes))
}

func (p *lineProgress) Phase(what string) {
	p.pullMeter.Phase(what)
	p.printf("%s\n", what)
}

func (p *lineProgress) Done(ok bool) {
	if p.stop == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
	p.stop = nil
	if ok {
		p.printf("took %s\n", p.summary())
	}
}

// barProgress shows a download bar per layer, a line on the downloads,
// and an unpack bar that moves with the tar bytes applied.
type barProgress struct {
	*pullMeter
	out    io.Writer
	p      *mpb.Progress
	bars   []*mpb.Bar
	unpack *mpb.Bar
	// status is a line without a bar: the downloads' state.
	status *mpb.Bar
}

func (p *barProgress) Begin(source string, layers []registry.Layer) {
	p.pullMeter.Begin(source, layers)
	p.p = mpb.New(mpb.WithOutput(p.out), mpb.WithWidth(32), mpb.WithAutoRefresh())
	for i, l := range layers {
		p.bars = append(p.bars, p.p.AddBar(l.Size,
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("layer %d/%d %s ", i+1, len(layers), shortDigest(l.Digest.String())))),
			mpb.AppendDecorators(decor.OnComplete(decor.CountersKibiByte("% .1f / % .1f"), "done")),
		))
	}
	p.status = p.p.New(0, mpb.NopStyle(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return p.downloadLine() })),
	)
	p.unpack = p.p.AddBar(max(p.unpackTotal(), 1),
		mpb.PrependDecorators(decor.Name("unpack "), decor.Percentage(decor.WC{W: 5})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return " " + p.unpackLine() })),
	)
}

func (p *barProgress) Fetching(i int, n int64) {
	p.pullMeter.Fetching(i, n)
	p.bars[i].IncrInt64(n)
}

func (p *barProgress) Cached(i int) {
	p.pullMeter.Cached(i)
	p.bars[i].SetCurrent(p.layers[i].Size)
}

func (p *barProgress) Fetched(i int) {
	p.pullMeter.Fetched(i)
	p.bars[i].SetCurrent(p.layers[i].Size)
}

func (p *barProgress) Applying(i int, size int64) {
	p.pullMeter.Applying(i, size)
	p.unpack.SetTotal(p.unpackTotal(), false)
}

func (p *barProgress) Unpacking(i int, n int64) {
	p.pullMeter.Unpacking(i, n)
	p.unpack.IncrInt64(n)
}

func (p *barProgress) Applied(i int, st unpack.Stats) {
	p.pullMeter.Applied(i, st)
	p.unpack.SetTotal(p.unpackTotal(), false)
}

func (p *barProgress) Done(ok bool) {
	if p.p == nil {
		return
	}
	if ok {
		p.unpack.SetTotal(-1, true)
		p.status.SetTotal(-1, true)
	}
	for _, b := range append(p.bars, p.unpack, p.status) {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	p.p.Wait()
	if ok {
		fmt.Fprintf(p.out, "took %s\n", p.summary())
	}
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

// stepPhases name the steps of machines pull, upgrade and rebuild that
// follow the unpack (provision.Steps, provision.UpgradeSteps), so that no
// phase sits silent.
var stepPhases = map[string]string{
	"volumes": "copying the volumes' content",
	"files":   "writing the machine's files",
	"merge":   "merging the machine's files",
	"init":    "installing man8s-init",
	"protect": "moving /run and /tmp aside",
	"install": "moving into place",
	"swap":    "swapping in the new version",
}

// withPhases returns a BeforeStep hook that shows the phase of each step
// on p, then runs next (the fault hook; nil for none).
func withPhases(p pullProgress, next func(string) error) func(string) error {
	return func(step string) error {
		if what, ok := stepPhases[step]; ok {
			p.Phase(what)
		}
		if next != nil {
			return next(step)
		}
		return nil
	}
}
