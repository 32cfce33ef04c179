package registry

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultPlatform returns the platform of this host: runtime.GOOS and
// runtime.GOARCH, with the variant "v8" on arm64 and, on 32-bit arm, the
// CPU's architecture version from /proc/cpuinfo (default "v7"), as
// containerd does.
func DefaultPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7"
		if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
			if v := armVariant(string(b)); v != "" {
				p.Variant = v
			}
		}
	}
	return normalizePlatform(p)
}

// armVariant returns the variant ("v5" ... "v8") named by the
// "CPU architecture" line of /proc/cpuinfo content, or "".
func armVariant(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "CPU architecture" {
			continue
		}
		value = strings.TrimSpace(value)
		// "7", "8", "5TEJ", "AArch64"
		if strings.EqualFold(value, "aarch64") {
			return "v8"
		}
		if len(value) > 0 && value[0] >= '5' && value[0] <= '8' {
			return "v" + value[:1]
		}
		return ""
	}
	return ""
}

// ParsePlatform parses "OS/ARCH[/VARIANT]" (e.g. "linux/arm64/v8") or a
// bare "ARCH" (OS linux) and normalises it the way containerd does:
// aarch64 is arm64 (variant v8), x86_64 is amd64, armhf is arm/v7, a
// missing arm variant is v7.
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	var p v1.Platform
	switch len(parts) {
	case 1:
		p = v1.Platform{OS: "linux", Architecture: parts[0]}
	case 2:
		p = v1.Platform{OS: parts[0], Architecture: parts[1]}
	case 3:
		p = v1.Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
	default:
		return v1.Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], e.g. linux/arm64/v8", s)
	}
	for _, part := range parts {
		if part == "" || strings.ContainsAny(part, " \t:") {
			return v1.Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], e.g. linux/arm64/v8", s)
		}
	}
	return normalizePlatform(p), nil
}

// platformString formats p as OS/ARCH[/VARIANT].
func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// normalizePlatform returns p with the OS, architecture and variant in the
// canonical spelling used for matching (containerd's platforms.Normalize,
// except that arm64 keeps the explicit variant "v8").
func normalizePlatform(p v1.Platform) v1.Platform {
	out := v1.Platform{
		OS:           strings.ToLower(p.OS),
		Architecture: strings.ToLower(p.Architecture),
		Variant:      strings.ToLower(p.Variant),
	}
	if out.OS == "macos" {
		out.OS = "darwin"
	}
	switch out.Architecture {
	case "i386", "i486", "i586", "i686":
		out.Architecture, out.Variant = "386", ""
	case "x86_64", "x86-64", "amd64":
		out.Architecture = "amd64"
		if out.Variant == "v1" {
			out.Variant = ""
		}
	case "aarch64", "arm64":
		out.Architecture = "arm64"
		switch out.Variant {
		case "", "8", "v8":
			out.Variant = "v8"
		}
	case "armhf":
		out.Architecture, out.Variant = "arm", "v7"
	case "armel":
		out.Architecture, out.Variant = "arm", "v6"
	case "arm":
		switch out.Variant {
		case "":
			out.Variant = "v7"
		case "5", "6", "7", "8":
			out.Variant = "v" + out.Variant
		}
	}
	return out
}

// variantRank orders the variants of architectures whose newer variants
// run the code of older ones (arm v5 < v6 < v7 < v8; arm64 v8 < v8.1 < ...
// < v9; amd64 v1 < v2 < v3 < v4). ok is false for other architectures and
// for variants it does not know. v must be normalised.
func variantRank(arch, variant string) (rank int, ok bool) {
	switch arch {
	case "arm":
		switch variant {
		case "v5", "v6", "v7", "v8":
			return int(variant[1] - '0'), true
		}
	case "amd64":
		switch variant {
		case "":
			return 1, true
		case "v2", "v3", "v4":
			return int(variant[1] - '0'), true
		}
	case "arm64":
		v, ok := strings.CutPrefix(variant, "v")
		if !ok {
			return 0, false
		}
		major, minor, _ := strings.Cut(v, ".")
		ma, err := strconv.Atoi(major)
		if err != nil || ma < 8 {
			return 0, false
		}
		mi := 0
		if minor != "" {
			if mi, err = strconv.Atoi(minor); err != nil || mi < 0 || mi > 99 {
				return 0, false
			}
		}
		return ma*100 + mi, true
	}
	return 0, false
}

// platformScore says how well candidate serves want (both normalised):
// ok is false when it cannot run there; a higher score is a closer match.
// The OS and architecture must be equal. For arm, arm64 and amd64 a
// candidate variant at or below the wanted one runs, the closest wins
// (an arm/v7 host takes v7, else v6, else v5). For other architectures the
// variant must be equal, or the wanted one empty.
func platformScore(want, candidate v1.Platform) (score int, ok bool) {
	if want.OS != candidate.OS || want.Architecture != candidate.Architecture {
		return 0, false
	}
	wr, wok := variantRank(want.Architecture, want.Variant)
	cr, cok := variantRank(candidate.Architecture, candidate.Variant)
	if wok && cok {
		if cr > wr {
			return 0, false
		}
		return cr, true
	}
	switch {
	case want.Variant == candidate.Variant:
		return 2, true
	case want.Variant == "":
		return 1, true
	}
	return 0, false
}

// selectManifest picks the entry of an index that serves want, and returns
// an error listing the platforms the index offers when none does. ref names
// the image in the error. Entries without a platform, nested indexes and
// attestation entries ("unknown/unknown") are never picked.
func selectManifest(idx *v1.IndexManifest, want v1.Platform, ref string) (v1.Descriptor, error) {
	want = normalizePlatform(want)
	best, bestScore := -1, -1
	var available []string
	for i, d := range idx.Manifests {
		if d.Platform == nil || d.MediaType.IsIndex() || d.Platform.OS == "unknown" {
			continue
		}
		available = append(available, platformString(*d.Platform))
		if s, ok := platformScore(want, normalizePlatform(*d.Platform)); ok && s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		return v1.Descriptor{}, noPlatformError(want, ref, available)
	}
	return idx.Manifests[best], nil
}

// noPlatformError says that ref has no image for want.
func noPlatformError(want v1.Platform, ref string, available []string) error {
	slices.Sort(available)
	available = slices.Compact(available)
	list := "none"
	if len(available) > 0 {
		list = strings.Join(available, ", ")
	}
	return fmt.Errorf("no image for %s in %s; available: %s", platformString(want), ref, list)
}
