package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Goals of issue 6, of issue 13 for the upgrade and of issue 19 for the
// progress display.
const (
	goalColdVsTar   = 0.6   // (b) ≤ 0.6 × (d)
	goalSpeedup     = 4.0   // (a), (e), (f) ≥ 4 × (b)
	goalPeakRSSByte = 150e6 // mbctl's peak RSS < 150 MB
	// goalUpgradeVsLayer reads "the upgrade's time is dominated by the
	// changed layer" as: the changed layer alone (u3) takes at least half
	// of the upgrade (u1).
	goalUpgradeVsLayer = 2.0 // (u1) ≤ 2 × (u3)
	// Issue 16: a second machine from a cached image takes at most 0.3 s
	// and 5 MB of disk (s2 to s4).
	goalSecondMachineSeconds = 0.3
	goalSecondMachineBytes   = 5e6
	// goalProgressCost (issue 19): drawing the bars costs no measurable
	// time; 5 % is below this machine's noise between rounds.
	goalProgressCost = 1.05 // (p1) ≤ 1.05 × (p0)
)

// Report is everything one run measured; it is also the -json output.
type Report struct {
	Started          time.Time         `json:"started"`
	Host             Host              `json:"host"`
	Rounds           int               `json:"rounds"`
	PageCacheDropped bool              `json:"page_cache_dropped"`
	FreshFS          bool              `json:"fresh_fs_per_case"`
	FixturesDir      string            `json:"fixtures_dir"`
	FixtureBuiltNow  bool              `json:"fixture_built_now"`
	Fixture          *Fixture          `json:"fixture"`
	Image            string            `json:"image,omitempty"`
	ImageDigest      string            `json:"image_digest,omitempty"`
	Tools            map[string]string `json:"tools"`
	PodmanDriver     string            `json:"podman_driver,omitempty"`
	Upgrade          *AppImage         `json:"upgrade_images,omitempty"`
	Cases            []*CaseResult     `json:"cases"`
	Ratios           []Ratio           `json:"ratios"`
}

// Host describes the machine.
type Host struct {
	CPUs        int    `json:"cpus"`
	MemoryBytes int64  `json:"memory_bytes"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute load
	// averages before and after the measurements: anything else running
	// shares the CPUs.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
}

// CaseResult is one case's rounds.
type CaseResult struct {
	ID      string   `json:"id"`
	Title   string   `json:"title"`
	Command string   `json:"command"`
	Samples []Sample `json:"samples"`
	// MedianSeconds is set when every round succeeded.
	MedianSeconds *float64 `json:"median_seconds,omitempty"`
	// Error makes the case n/a.
	Error string `json:"error,omitempty"`
	// TreeEntries is the number of paths of the unpacked tree of round 1.
	TreeEntries int `json:"tree_entries,omitempty"`
	// Breakdown is where the time of a machines case went (upgrade.go).
	Breakdown *Breakdown `json:"breakdown,omitempty"`
}

// Sample is one round of a case.
type Sample struct {
	Round       int     `json:"round"`
	Seconds     float64 `json:"seconds"`
	MaxRSSKiB   int64   `json:"max_rss_kib"`
	UserSeconds float64 `json:"user_seconds"`
	SysSeconds  float64 `json:"sys_seconds"`
	// LayerBlobGETs and BlobGETs are counted for the warm-cache case and
	// the upgrades (u1, u4).
	LayerBlobGETs *int `json:"layer_blob_gets,omitempty"`
	BlobGETs      *int `json:"blob_gets,omitempty"`
	// Layers are mbctl's layer timings, for the machines cases (u1, u2).
	Layers []LayerTiming `json:"layers,omitempty"`
	// ExtraDiskBytes is the disk the timed pull took (s0 to s4).
	ExtraDiskBytes *int64 `json:"extra_disk_bytes,omitempty"`
}

// Ratio is one goal check.
type Ratio struct {
	Name    string   `json:"name"`
	Goal    string   `json:"goal"`
	Value   *float64 `json:"value,omitempty"`
	Unit    string   `json:"unit,omitempty"`
	Verdict string   `json:"verdict"` // PASS, FAIL, n/a, or info
}

// peakKiB is the largest peak RSS of the case's rounds.
func (c *CaseResult) peakKiB() int64 {
	var m int64
	for _, s := range c.Samples {
		m = max(m, s.MaxRSSKiB)
	}
	return m
}

// medianCPU is the median of the rounds' user plus system CPU seconds.
func (c *CaseResult) medianCPU() float64 {
	cpu := make([]float64, len(c.Samples))
	for i, s := range c.Samples {
		cpu[i] = s.UserSeconds + s.SysSeconds
	}
	return median(cpu)
}

// median returns the median of xs (the mean of the middle two for an even
// count).
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// report assembles the results.
func (b *bench) report(cases []*benchCase) *Report {
	rep := &Report{
		FreshFS: b.opts.freshFS && !b.opts.keep,
		Started: b.started, Host: hostInfo(b.loadStart), Rounds: b.opts.rounds, FixturesDir: b.opts.fixtures,
		FixtureBuiltNow: b.fixtureBuilt, Fixture: b.fixture, Image: b.ref, ImageDigest: b.imageDigest,
		Tools: map[string]string{}, PodmanDriver: b.podmanDriver,
	}
	if b.app != nil {
		rep.Upgrade = &b.app.desc
	}
	for name, t := range b.tools {
		if t.Version != "" {
			rep.Tools[name] = t.Version
		}
	}
	if b.mbctlVersion != "" {
		rep.Tools["mbctl"] = b.mbctlVersion
	}
	if b.craneVersion != "" {
		rep.Tools["crane"] = b.craneVersion
	}
	byID := map[string]*CaseResult{}
	for _, c := range cases {
		if c.res.Error == "" && len(c.res.Samples) > 0 {
			secs := make([]float64, len(c.res.Samples))
			for i, s := range c.res.Samples {
				secs[i] = s.Seconds
			}
			m := median(secs)
			c.res.MedianSeconds = &m
			c.res.Breakdown = c.res.breakdown()
		}
		rep.Cases = append(rep.Cases, c.res)
		byID[c.ID] = c.res
	}
	rep.Ratios = ratios(byID)
	return rep
}

// ratios computes the goal checks from the medians.
func ratios(byID map[string]*CaseResult) []Ratio {
	med := func(id string) (float64, bool) {
		c := byID[id]
		if c == nil || c.MedianSeconds == nil || *c.MedianSeconds <= 0 {
			return 0, false
		}
		return *c.MedianSeconds, true
	}
	quot := func(num, den string) *float64 {
		n, ok1 := med(num)
		d, ok2 := med(den)
		if !ok1 || !ok2 {
			return nil
		}
		q := n / d
		return &q
	}
	verdict := func(v *float64, pass func(float64) bool) string {
		if v == nil {
			return "n/a"
		}
		if pass(*v) {
			return "PASS"
		}
		return "FAIL"
	}
	atMost := func(limit float64) func(float64) bool { return func(x float64) bool { return x <= limit } }
	atLeast := func(limit float64) func(float64) bool { return func(x float64) bool { return x >= limit } }
	var rs []Ratio
	add := func(name, goal string, v *float64, unit string, pass func(float64) bool) {
		vd := "info"
		if pass != nil {
			vd = verdict(v, pass)
		} else if v == nil {
			vd = "n/a"
		}
		rs = append(rs, Ratio{Name: name, Goal: goal, Value: v, Unit: unit, Verdict: vd})
	}
	add("(b)/(d)  mbctl cold vs gzip|tar", fmt.Sprintf("≤ %.1f", goalColdVsTar), quot("b", "d"), "×", atMost(goalColdVsTar))
	add("(a)/(b)  skopeo+umoci vs mbctl", fmt.Sprintf("≥ %.0f", goalSpeedup), quot("a", "b"), "×", atLeast(goalSpeedup))
	add("(e)/(b)  podman vs mbctl", fmt.Sprintf("≥ %.0f", goalSpeedup), quot("e", "b"), "×", atLeast(goalSpeedup))
	add("(f)/(b)  crane|tar vs mbctl", fmt.Sprintf("≥ %.0f", goalSpeedup), quot("f", "b"), "×", atLeast(goalSpeedup))
	add("(c)/(b)  warm vs cold cache", "< 1", quot("c", "b"), "×", func(x float64) bool { return x < 1 })
	add("(p1)/(p0)  progress bars vs none", fmt.Sprintf("≤ %.2f", goalProgressCost), quot("p1", "p0"), "×", atMost(goalProgressCost))

	add("(c) layer-blob GETs (worst round)", "= 0", worstLayerGETs(byID["c"]), "", func(x float64) bool { return x == 0 })

	var rss *float64
	for _, id := range []string{"b", "c"} {
		if c := byID[id]; c != nil && c.Error == "" && len(c.Samples) > 0 {
			v := float64(c.peakKiB()) * 1024 / 1e6
			if rss == nil || v > *rss {
				rss = &v
			}
		}
	}
	add("mbctl peak RSS, (b) and (c)", fmt.Sprintf("< %.0f MB", goalPeakRSSByte/1e6), rss, "MB",
		func(x float64) bool { return x*1e6 < goalPeakRSSByte })

	add("(u1)/(u3)  upgrade vs changed layer alone", fmt.Sprintf("≤ %.0f", goalUpgradeVsLayer), quot("u1", "u3"), "×", atMost(goalUpgradeVsLayer))
	add("(u5)/(u3)  upgrade on btrfs vs changed layer alone", fmt.Sprintf("≤ %.0f", goalUpgradeVsLayer), quot("u5", "u3"), "×", atMost(goalUpgradeVsLayer))
	add("(u5)/(u2)  upgrade on btrfs vs fresh pull", "", quot("u5", "u2"), "×", nil)
	add("(u1) layer-blob GETs (worst round)", "= 1", worstLayerGETs(byID["u1"]), "", func(x float64) bool { return x == 1 })
	add("(u1)/(u2)  upgrade vs fresh pull", "", quot("u1", "u2"), "×", nil)
	add("(u1)/(c)  upgrade vs warm-cache download", "", quot("u1", "c"), "×", nil)
	add("(u4)/(u1)  podman pull+recreate vs upgrade", "", quot("u4", "u1"), "×", nil)

	for _, c := range []struct{ id, what string }{{"s2", "strict, ext4"}, {"s3", "free, btrfs"}, {"s4", "strict, btrfs"}} {
		sec, _ := med(c.id)
		var secp *float64
		if sec > 0 {
			secp = &sec
		}
		add(fmt.Sprintf("(%s) 2nd machine, %s: time", c.id, c.what), fmt.Sprintf("≤ %.1f s", goalSecondMachineSeconds), secp, "s", atMost(goalSecondMachineSeconds))
		add(fmt.Sprintf("(%s) 2nd machine, %s: disk (worst round)", c.id, c.what), fmt.Sprintf("≤ %.0f MB", goalSecondMachineBytes/1e6), worstDiskMB(byID[c.id]), "MB",
			func(x float64) bool { return x*1e6 <= goalSecondMachineBytes })
		add(fmt.Sprintf("(%s)/(s1)  vs today's 2nd machine", c.id), "", quot(c.id, "s1"), "×", nil)
		add(fmt.Sprintf("(%s)/(s0)  vs a full pull", c.id), "", quot(c.id, "s0"), "×", nil)
	}
	add("(s1) 2nd machine, free, ext4: disk (worst round)", "", worstDiskMB(byID["s1"]), "MB", nil)

	add("(a)/(d)  for reference", "", quot("a", "d"), "×", nil)
	add("(e)/(d)  for reference", "", quot("e", "d"), "×", nil)
	add("(f)/(d)  for reference", "", quot("f", "d"), "×", nil)
	return rs
}

// worstLayerGETs is the largest number of layer-blob GETs of c's rounds,
// or nil when c did not run.
func worstLayerGETs(c *CaseResult) *float64 {
	if c == nil || c.Error != "" || len(c.Samples) == 0 {
		return nil
	}
	worst := 0
	for _, s := range c.Samples {
		if s.LayerBlobGETs != nil {
			worst = max(worst, *s.LayerBlobGETs)
		}
	}
	g := float64(worst)
	return &g
}

// printReport writes the human-readable report.
func printReport(w io.Writer, rep *Report) {
	f := rep.Fixture
	fmt.Fprintf(w, "\nmbctl pull benchmark\n\n")
	fmt.Fprintf(w, "host     %d CPUs, %.1f GB memory, Linux %s, %s\n", rep.Host.CPUs, float64(rep.Host.MemoryBytes)/1e9, rep.Host.Kernel, rep.Host.GoVersion)
	fmt.Fprintf(w, "         load average %s before, %s after the measurements\n", rep.Host.LoadStart, rep.Host.LoadEnd)
	took := time.Duration(f.BuildSeconds * float64(time.Second)).Round(time.Second)
	built := fmt.Sprintf("reused (built %s in %s)", f.Built.Format("2006-01-02"), took)
	if rep.FixtureBuiltNow {
		built = fmt.Sprintf("built now in %s", took)
	}
	fmt.Fprintf(w, "fixture  %s: %s\n", rep.FixturesDir, built)
	if rep.Image != "" {
		fmt.Fprintf(w, "image    %s@%s\n", rep.Image, rep.ImageDigest)
	}
	fmt.Fprintf(w, "         %d layers, %s compressed (gzip -6), %s as tar, %s tar entries\n",
		len(f.Layers), mb(f.CompressedSize()), mb(f.TarSize()), thousands(f.TarEntries()))
	fmt.Fprintf(w, "         unpacked: %s of file content in %s entries\n", mb(f.UnpackedBytes), thousands(f.UnpackedEntries))
	for i, l := range f.Layers {
		fmt.Fprintf(w, "         layer %d: %9s gz, %9s tar, %6s entries  %s\n", i+1, mb(l.Size), mb(l.TarSize), thousands(l.Entries), l.What)
	}
	if u := rep.Upgrade; u != nil {
		fmt.Fprintf(w, "upgrade  %s:%s, then :%s: the image's %d layers and an app layer (u3: :%s, it alone)\n",
			u.Repo, appV1Tag, appV2Tag, len(f.Layers), appLayerTag)
		fmt.Fprintf(w, "         v1@%s, v2@%s\n", u.V1Digest, u.V2Digest)
		for _, l := range u.Layers {
			fmt.Fprintf(w, "         layer %d: %9s gz, %9s tar, %6s entries  %s\n", len(f.Layers)+1, mb(l.Size), mb(l.TarSize), thousands(l.Entries), l.What)
		}
	}
	names := make([]string, 0, len(rep.Tools))
	for n := range rep.Tools {
		if n != "bash" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var tools []string
	for _, n := range names {
		v := rep.Tools[n]
		if n == "podman" && rep.PodmanDriver != "" {
			v += " (" + rep.PodmanDriver + " driver)"
		}
		tools = append(tools, n+" "+v)
	}
	fmt.Fprintf(w, "tools    %s\n", strings.Join(tools, ", "))
	fmt.Fprintf(w, "method   %d rounds; within a round the cases alternate (order rotated each round); wall clock\n", rep.Rounds)
	fmt.Fprintf(w, "         per command, median of the rounds. Page cache NOT dropped: the blobs on disk and in the\n")
	if rep.FreshFS {
		fmt.Fprintf(w, "         registry are read from memory. Each case writes into a new ext4 file system of its own\n")
		fmt.Fprintf(w, "         (loop device), synced, unmounted and deleted after it, untimed.\n\n")
	} else {
		fmt.Fprintf(w, "         registry are read from memory. Each case writes into a fresh empty dir on the filesystem\n")
		fmt.Fprintf(w, "         of -workdir, then sync(2), untimed; outputs are removed only after all rounds.\n\n")
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"case", "what"}
	for r := 1; r <= rep.Rounds; r++ {
		head = append(head, fmt.Sprintf("round %d", r))
	}
	head = append(head, "median", "CPU u+s", "peak RSS", "entries")
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, c := range rep.Cases {
		row := []string{"(" + c.ID + ")", c.Title}
		for r := 1; r <= rep.Rounds; r++ {
			cell := "-"
			for _, s := range c.Samples {
				if s.Round == r {
					cell = fmt.Sprintf("%.2f s", s.Seconds)
				}
			}
			row = append(row, cell)
		}
		note := ""
		if c.MedianSeconds != nil {
			row = append(row, fmt.Sprintf("%.2f s", *c.MedianSeconds), fmt.Sprintf("%.1f s", c.medianCPU()), formatKiB(c.peakKiB()))
			if c.ID == "c" || c.ID == "u1" || c.ID == "u4" {
				note = layerGETsNote(c)
			}
		} else {
			row = append(row, "n/a", "-", "-")
			note = "n/a"
			if c.Error != "" {
				note = "n/a (error: " + c.Error + ")"
			}
		}
		entries := "-"
		if c.TreeEntries > 0 {
			entries = thousands(c.TreeEntries)
		}
		row = append(row, entries)
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t"+note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n(entries: paths in the unpacked tree of round 1; the image has %s. (d) does not apply\n", thousands(f.UnpackedEntries))
	fmt.Fprintf(w, "whiteouts, so its tree is bigger. CPU u+s: user plus system CPU time of the case's processes,\n")
	fmt.Fprintf(w, "median. peak RSS: the largest process of the case, max over rounds.)\n\n")

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ratio / goal check\tvalue\tgoal\tverdict\t")
	for _, r := range rep.Ratios {
		v := "n/a"
		if r.Value != nil {
			switch r.Unit {
			case "×":
				v = fmt.Sprintf("%.2f×", *r.Value)
			case "MB":
				v = fmt.Sprintf("%.1f MB", *r.Value)
			case "s":
				v = fmt.Sprintf("%.2f s", *r.Value)
			default:
				v = fmt.Sprintf("%g", *r.Value)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.Name, v, r.Goal, r.Verdict)
	}
	tw.Flush()
	printBreakdowns(w, rep.Cases)
}

// printBreakdowns writes where the machines cases' time went, side by side.
func printBreakdowns(w io.Writer, cases []*CaseResult) {
	var cs []*CaseResult
	layers := 0
	for _, c := range cases {
		if c.Breakdown != nil {
			cs = append(cs, c)
			layers = max(layers, len(c.Breakdown.Layers))
		}
	}
	if len(cs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nwhere the time goes (mbctl -v's layer lines, medians of the rounds): per layer its download\n")
	fmt.Fprintf(w, "(overlapping the layers before it) + its application (the applications follow one another)\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := []string{""}
	for _, c := range cs {
		row = append(row, "("+c.ID+")")
	}
	fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	for i := 0; i < layers; i++ {
		row = []string{fmt.Sprintf("layer %d", i+1)}
		for _, c := range cs {
			cell := "-"
			if i < len(c.Breakdown.Layers) {
				l := c.Breakdown.Layers[i]
				dl := "cached"
				if l.DownloadBytes > 0 {
					dl = fmt.Sprintf("%.2f s (%s)", l.DownloadSeconds, mb(l.DownloadBytes))
				}
				cell = fmt.Sprintf("%s + %.2f s", dl, l.ApplySeconds)
			}
			row = append(row, cell)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	lines := []struct {
		name string
		get  func(*CaseResult) float64
	}{
		{"unpack: 1st wait to last applied", func(c *CaseResult) float64 { return c.Breakdown.UnpackSeconds }},
		{"the rest (image, init, files, swap)", func(c *CaseResult) float64 { return c.Breakdown.RestSeconds }},
		{"wall clock", func(c *CaseResult) float64 { return *c.MedianSeconds }},
	}
	for _, l := range lines {
		row = []string{l.name}
		for _, c := range cs {
			row = append(row, fmt.Sprintf("%.2f s", l.get(c)))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

// layerGETsNote describes the blob GETs of the warm-cache rounds.
func layerGETsNote(c *CaseResult) string {
	var parts []string
	for _, s := range c.Samples {
		if s.LayerBlobGETs != nil && s.BlobGETs != nil {
			parts = append(parts, fmt.Sprintf("%d/%d", *s.LayerBlobGETs, *s.BlobGETs))
		}
	}
	return "layer-blob/all-blob GETs per round: " + strings.Join(parts, ", ")
}

// writeJSON writes rep to path.
func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// mb formats bytes in MB (10^6).
func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// formatKiB formats a peak RSS given in KiB, in MB (10^6 bytes).
func formatKiB(kib int64) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB", float64(kib)*1024/1e6)
}

// thousands formats n with thousands separators.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// worstDiskMB is the most disk a round of c took, in MB.
func worstDiskMB(c *CaseResult) *float64 {
	if c == nil || c.Error != "" {
		return nil
	}
	var worst *float64
	for _, s := range c.Samples {
		if s.ExtraDiskBytes == nil {
			continue
		}
		v := float64(*s.ExtraDiskBytes) / 1e6
		if worst == nil || v > *worst {
			worst = &v
		}
	}
	return worst
}
