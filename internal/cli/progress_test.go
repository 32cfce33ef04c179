package cli

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/image/unpack"
)

func TestPullProgress(t *testing.T) {
	layers := []registry.Layer{
		{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}, Size: 2048},
		{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}, Size: 10},
	}
	play := func(p pullProgress) {
		p.Begin(layers)
		p.Fetching(0, 2048)
		p.Fetched(0)
		p.Cached(1)
		p.Applied(0, unpack.Stats{Entries: 3, Bytes: 2048})
		p.Applied(1, unpack.Stats{Entries: 1})
		p.Done(true)
	}
	tests := []struct {
		name  string
		tty   bool
		quiet bool
		json  bool
		want  []string
	}{
		{"pipe: one line per event", false, false, false, []string{
			"layer 1/2 sha256:aaaaaaaaaaaa: downloaded 2.0 KiB\n",
			"layer 2/2 sha256:bbbbbbbbbbbb: in the cache\n",
			"layer 1/2 sha256:aaaaaaaaaaaa: unpacked 3 entries, 2.0 KiB\n",
			"layer 2/2 sha256:bbbbbbbbbbbb: unpacked 1 entry, 0 B\n",
		}},
		{"terminal: bars", true, false, false, []string{"layer 1/2 sha256:aaaaaaaaaaaa", "unpacked"}},
		{"terminal with --json: lines, no bars", true, false, true, []string{
			"layer 1/2 sha256:aaaaaaaaaaaa: downloaded 2.0 KiB\n",
			"layer 1/2 sha256:aaaaaaaaaaaa: unpacked 3 entries, 2.0 KiB\n",
		}},
		{"quiet", true, true, false, nil},
		{"quiet with --json", true, true, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, errOut := iostreams.Test()
			ios.SetStderrTTY(tt.tty)
			p := newPullProgress(ios, tt.quiet, tt.json)
			if _, bars := p.(*barProgress); bars && (tt.json || !tt.tty) {
				t.Errorf("progress bars with tty=%v json=%v", tt.tty, tt.json)
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
		})
	}
}
