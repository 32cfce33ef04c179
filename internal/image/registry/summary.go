package registry

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary is what `mbctl oci inspect` shows of an image: its identity,
// runtime configuration and layers. Slices are sorted where the image
// format has no order (volumes, ports).
type Summary struct {
	Reference    string            `json:"reference"`
	Source       string            `json:"source"`
	Digest       string            `json:"digest"`
	IndexDigest  string            `json:"index_digest,omitempty"`
	MediaType    string            `json:"media_type"`
	Platform     string            `json:"platform"`
	OS           string            `json:"os"`
	Architecture string            `json:"architecture"`
	Variant      string            `json:"variant,omitempty"`
	Created      time.Time         `json:"created,omitzero"`
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd"`
	Env          []string          `json:"env"`
	WorkingDir   string            `json:"working_dir"`
	User         string            `json:"user"`
	StopSignal   string            `json:"stop_signal"`
	Volumes      []string          `json:"volumes"`
	ExposedPorts []string          `json:"exposed_ports"`
	Labels       map[string]string `json:"labels"`
	Layers       []LayerSummary    `json:"layers"`
	// TotalSize is the sum of the layers' (compressed) sizes.
	TotalSize int64 `json:"total_size"`
}

// LayerSummary is one layer in a Summary.
type LayerSummary struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
}

// Inspect builds the Summary of a resolved image. It fetches nothing.
// Nil slices and maps become empty ones, so JSON shows [] and {}.
func Inspect(im *Image) Summary {
	s := Summary{
		Reference:    DisplayName(im.Ref),
		Source:       im.Source,
		Digest:       im.Digest.String(),
		MediaType:    string(im.MediaType),
		Entrypoint:   []string{},
		Cmd:          []string{},
		Env:          []string{},
		Volumes:      []string{},
		ExposedPorts: []string{},
		Labels:       map[string]string{},
		Layers:       make([]LayerSummary, 0, len(im.Layers)),
	}
	if im.IndexDigest != nil {
		s.IndexDigest = im.IndexDigest.String()
	}
	if cf := im.Config; cf != nil {
		s.OS, s.Architecture, s.Variant = cf.OS, cf.Architecture, cf.Variant
		if cf.OS != "" || cf.Architecture != "" {
			s.Platform = cf.OS + "/" + cf.Architecture
			if cf.Variant != "" {
				s.Platform += "/" + cf.Variant
			}
		}
		s.Created = cf.Created.Time
		c := cf.Config
		s.Entrypoint = append(s.Entrypoint, c.Entrypoint...)
		s.Cmd = append(s.Cmd, c.Cmd...)
		s.Env = append(s.Env, c.Env...)
		s.WorkingDir, s.User, s.StopSignal = c.WorkingDir, c.User, c.StopSignal
		s.Volumes = append(s.Volumes, slices.Sorted(maps.Keys(c.Volumes))...)
		s.ExposedPorts = append(s.ExposedPorts, slices.Collect(maps.Keys(c.ExposedPorts))...)
		slices.SortFunc(s.ExposedPorts, comparePorts)
		maps.Copy(s.Labels, c.Labels)
	}
	for _, l := range im.Layers {
		s.Layers = append(s.Layers, LayerSummary{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
		s.TotalSize += l.Size
	}
	return s
}

// comparePorts orders exposed ports ("80/tcp", "53/udp", "8000-8010/tcp")
// by number, then protocol; what does not parse sorts last, by text.
func comparePorts(a, b string) int {
	pa, aok := portNumber(a)
	pb, bok := portNumber(b)
	switch {
	case aok && bok && pa != pb:
		return pa - pb
	case aok != bok:
		if aok {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// portNumber returns the (first) port number of "PORT[-END][/PROTO]".
func portNumber(s string) (int, bool) {
	p, _, _ := strings.Cut(s, "/")
	p, _, _ = strings.Cut(p, "-")
	n, err := strconv.Atoi(p)
	return n, err == nil
}
