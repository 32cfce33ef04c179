package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mb(kib int64) string { return fmt.Sprintf("%.1f MB", float64(kib)*1024/1e6) }

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func sum(xs []int64) int64 {
	var s int64
	for _, x := range xs {
		s += x
	}
	return s
}

func mean(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	return sum(xs) / int64(len(xs))
}

func pss(ms []memory) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.PSS
	}
	return out
}

func rss(ms []memory) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.RSS
	}
	return out
}

// deltas returns xs[0]-base, xs[1]-xs[0], ... (sign flipped when drop:
// for MemAvailable, which falls as memory is used).
func deltas(base int64, xs []int64, drop bool) []int64 {
	out := make([]int64, len(xs))
	prev := base
	for i, x := range xs {
		out[i] = x - prev
		if drop {
			out[i] = -out[i]
		}
		prev = x
	}
	return out
}

// across returns f of every round's phase (sel picks the phase).
func across[T any](res *results, sel func(round) *phase, f func(*phase) T) []T {
	var out []T
	for _, r := range res.Rounds {
		out = append(out, f(sel(r)))
	}
	return out
}

func report(w io.Writer, res *results) {
	n := res.Machines
	tog := func(r round) *phase { return r.Together }
	obo := func(r round) *phase { return r.OneByOne }
	med := func(sel func(round) *phase, f func(*phase) time.Duration) time.Duration {
		return median(across(res, sel, f))
	}
	medK := func(sel func(round) *phase, f func(*phase) int64) int64 {
		return median(across(res, sel, f))
	}
	fmt.Fprintf(w, "\nScale: %d strict machines of one image (one shared read-only root) in one testbed host, `mbctl machines run` each\n", n)
	fmt.Fprintf(w, "%s; load average %s before, %s after; %d round(s), medians\n\n", res.Mbctl, res.Load[0], res.Load[len(res.Load)-1], len(res.Rounds))

	tw := &table{}
	tw.row("", "together", "one by one")
	tT, tB := med(tog, func(p *phase) time.Duration { return p.Total }), med(obo, func(p *phase) time.Duration { return p.Total })
	tw.row("all answering (wall; one by one: sum)", secs(tT), secs(tB))
	for _, q := range []struct {
		name string
		f    func(*phase) time.Duration
	}{
		{"time to answer, machine 1", func(p *phase) time.Duration { return p.Answer[0] }},
		{"  median machine", func(p *phase) time.Duration { return median(p.Answer) }},
		{fmt.Sprintf("  machine %d", n), func(p *phase) time.Duration { return p.Answer[n-1] }},
		{"  slowest", func(p *phase) time.Duration { return slices.Max(p.Answer) }},
	} {
		tw.row(q.name, secs(med(tog, q.f)), secs(med(obo, q.f)))
	}
	for _, q := range []struct {
		name string
		f    func(*phase) int64
	}{
		{"PSS per machine, mean", func(p *phase) int64 { return mean(pss(p.Memory)) }},
		{"  machine 1", func(p *phase) int64 { return p.Memory[0].PSS }},
		{fmt.Sprintf("  machine %d", n), func(p *phase) int64 { return p.Memory[n-1].PSS }},
		{"  all machines", func(p *phase) int64 { return sum(pss(p.Memory)) }},
		{"RSS per machine, mean", func(p *phase) int64 { return mean(rss(p.Memory)) }},
		{"MemAvailable drop / machine", func(p *phase) int64 { return (p.HostBefore.Available - p.HostAfter.Available) / int64(n) }},
		{"unreclaimable kernel rise / machine", func(p *phase) int64 { return (p.HostAfter.Kernel - p.HostBefore.Kernel) / int64(n) }},
		{"mbctl run (foreground) PSS, mean", func(p *phase) int64 { return mean(pss(p.Mbctl)) }},
	} {
		tw.row(q.name, mb(medK(tog, q.f)), mb(medK(obo, q.f)))
	}
	tw.write(w)
	fmt.Fprintf(w, "\none by one / together: %.2fx (%s vs %s)\n", float64(tB)/float64(tT), secs(tB), secs(tT))
	p0 := res.Rounds[0].OneByOne
	fmt.Fprintf(w, "memory: systemd-nspawn and its descendants, %d processes a machine, from /proc/PID/smaps_rollup; PSS splits each shared page among its users, RSS counts it in full for each\n", p0.Memory[0].Procs)
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(p0.ByComm)) {
		m := p0.ByComm[c]
		parts = append(parts, fmt.Sprintf("%s ×%d PSS %s RSS %s", c, m.Procs/n, mb(m.PSS/int64(n)), mb(m.RSS/int64(n))))
	}
	fmt.Fprintf(w, "by process, mean per machine (one by one, round 1, all up): %s\n", strings.Join(parts, "; "))

	avail := make([]int64, len(p0.GrowthHost))
	kernel := make([]int64, len(p0.GrowthHost))
	for i, h := range p0.GrowthHost {
		avail[i], kernel[i] = h.Available, h.Kernel
	}
	pd := deltas(0, p0.GrowthPSS, false)
	ad := deltas(p0.HostBefore.Available, avail, true)
	kd := deltas(p0.HostBefore.Kernel, kernel, false)
	fmt.Fprintf(w, "\nHow it grows (one by one, round 1), machine k = 1..%d:\n", n)
	fmt.Fprintf(w, "  time to answer (s):          %s\n", joinDur(p0.Answer))
	fmt.Fprintf(w, "  PSS added (MB):              %s\n", joinKiB(pd))
	fmt.Fprintf(w, "  MemAvailable drop (MB):      %s\n", joinKiB(ad))
	fmt.Fprintf(w, "  kernel (unreclaimable) (MB): %s\n", joinKiB(kd))
	if n >= 2 {
		fmt.Fprintf(w, "  machine 1: PSS %+.1f MB, MemAvailable drop %+.1f MB, kernel %+.1f MB; machines 2..%d, median: PSS %+.1f MB, MemAvailable drop %+.1f MB, kernel %+.1f MB\n",
			mbf(pd[0]), mbf(ad[0]), mbf(kd[0]), n, mbf(median(pd[1:])), mbf(median(ad[1:])), mbf(median(kd[1:])))
	}
	fmt.Fprintf(w, "  (MemAvailable is the whole host's: other jobs on it move it too)\n")
}

func mbf(kib int64) float64 { return float64(kib) * 1024 / 1e6 }

func joinDur(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(s, " ")
}

func joinKiB(ks []int64) string {
	var s []string
	for _, k := range ks {
		s = append(s, fmt.Sprintf("%.1f", float64(k)*1024/1e6))
	}
	return strings.Join(s, " ")
}

// table prints left-aligned columns.
type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	var width []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", width[i]+2, c)
			} else {
				fmt.Fprintf(&b, "%*s  ", width[i], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
