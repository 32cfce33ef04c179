package registry

import (
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestParsePlatform(t *testing.T) {
	tests := []struct{ in, want string }{
		{"linux/amd64", "linux/amd64"},
		{"linux/x86_64", "linux/amd64"},
		{"linux/amd64/v1", "linux/amd64"},
		{"linux/amd64/v3", "linux/amd64/v3"},
		{"linux/arm64", "linux/arm64/v8"},
		{"linux/aarch64", "linux/arm64/v8"},
		{"linux/arm64/v8", "linux/arm64/v8"},
		{"linux/arm64/8", "linux/arm64/v8"},
		{"linux/arm", "linux/arm/v7"},
		{"linux/arm/6", "linux/arm/v6"},
		{"linux/armhf", "linux/arm/v7"},
		{"linux/armel", "linux/arm/v6"},
		{"linux/i386", "linux/386"},
		{"Linux/S390X", "linux/s390x"},
		{"riscv64", "linux/riscv64"},
	}
	for _, tt := range tests {
		p, err := ParsePlatform(tt.in)
		if err != nil {
			t.Errorf("ParsePlatform(%q): %v", tt.in, err)
			continue
		}
		if got := platformString(p); got != tt.want {
			t.Errorf("ParsePlatform(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "linux/", "/amd64", "linux/amd64/v8/x", "linux/amd64:10"} {
		if _, err := ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q) succeeded", bad)
		}
	}
}

func TestDefaultPlatform(t *testing.T) {
	p := DefaultPlatform()
	if p.OS != runtime.GOOS {
		t.Errorf("OS %q", p.OS)
	}
	if normalizePlatform(v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}).Architecture != p.Architecture {
		t.Errorf("architecture %q for GOARCH %s", p.Architecture, runtime.GOARCH)
	}
	if runtime.GOARCH == "arm64" && p.Variant != "v8" {
		t.Errorf("arm64 variant %q", p.Variant)
	}
}

func TestARMVariant(t *testing.T) {
	tests := []struct{ cpuinfo, want string }{
		{"processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU architecture: 7\n", "v7"},
		{"CPU architecture: 5TEJ\n", "v5"},
		{"CPU architecture:\t8\n", "v8"},
		{"CPU architecture: AArch64\n", "v8"},
		{"CPU architecture: 6\nCPU architecture: 7\n", "v6"},
		{"model name: x\n", ""},
		{"CPU architecture: 4\n", ""},
	}
	for _, tt := range tests {
		if got := armVariant(tt.cpuinfo); got != tt.want {
			t.Errorf("armVariant(%q) = %q, want %q", tt.cpuinfo, got, tt.want)
		}
	}
}

// index returns an index with one image entry per platform string
// ("" for an entry without platform).
func index(platforms ...string) *v1.IndexManifest {
	idx := &v1.IndexManifest{MediaType: types.OCIImageIndex}
	for i, s := range platforms {
		d := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(rune('a'+i)), 64)}}
		if s != "" {
			parts := strings.Split(s, "/")
			p := v1.Platform{OS: parts[0], Architecture: parts[1]}
			if len(parts) > 2 {
				p.Variant = parts[2]
			}
			d.Platform = &p
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	return idx
}

func TestSelectManifest(t *testing.T) {
	tests := []struct {
		name      string
		platforms []string
		want      string
		pick      int // index of the expected entry, -1 for an error
		errText   string
	}{
		{"exact", []string{"linux/arm64/v8", "linux/amd64"}, "linux/amd64", 1, ""},
		{"arm64 without variant in index", []string{"linux/amd64", "linux/arm64"}, "linux/arm64/v8", 1, ""},
		{"arm64 v8 in index, plain request", []string{"linux/arm64/v8"}, "linux/arm64", 0, ""},
		{"arm64 v8 host does not take v8.2", []string{"linux/arm64/v8.2"}, "linux/arm64", -1, "available: linux/arm64/v8.2"},
		{"arm64 v9 host takes v8", []string{"linux/arm64/v8"}, "linux/arm64/v9", 0, ""},
		{"arm default v7 prefers v7", []string{"linux/arm/v6", "linux/arm/v7", "linux/arm/v5"}, "linux/arm", 1, ""},
		{"arm v7 falls back to v6", []string{"linux/arm/v6", "linux/arm64/v8"}, "linux/arm/v7", 0, ""},
		{"arm v6 does not take v7", []string{"linux/arm/v7"}, "linux/arm/v6", -1, "no image for linux/arm/v6"},
		{"amd64 v3 takes plain amd64", []string{"linux/amd64"}, "linux/amd64/v3", 0, ""},
		{"amd64 v3 prefers v3", []string{"linux/amd64", "linux/amd64/v3"}, "linux/amd64/v3", 1, ""},
		{"plain amd64 skips v3", []string{"linux/amd64/v3", "linux/amd64"}, "linux/amd64", 1, ""},
		{"first of equals", []string{"linux/amd64", "linux/amd64"}, "linux/amd64", 0, ""},
		{"skips attestations and unlabelled", []string{"unknown/unknown", "", "linux/amd64"}, "linux/amd64", 2, ""},
		{"x86_64 alias", []string{"linux/x86_64"}, "linux/amd64", 0, ""},
		{"os must match", []string{"windows/amd64"}, "linux/amd64", -1, "available: windows/amd64"},
		{"s390x listed", []string{"linux/arm64/v8", "linux/amd64", "unknown/unknown", "linux/amd64"}, "linux/s390x", -1,
			"no image for linux/s390x in example.com/app:1; available: linux/amd64, linux/arm64/v8"},
		{"empty index", nil, "linux/amd64", -1, "available: none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := ParsePlatform(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			idx := index(tt.platforms...)
			d, err := selectManifest(idx, want, "example.com/app:1")
			if tt.pick < 0 {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("error %v, want %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Digest != idx.Manifests[tt.pick].Digest {
				t.Errorf("picked %s (%v), want entry %d", d.Digest, d.Platform, tt.pick)
			}
		})
	}
}

// v1Platform is a short constructor for tests.
func v1Platform(os, arch string) v1.Platform { return v1.Platform{OS: os, Architecture: arch} }
