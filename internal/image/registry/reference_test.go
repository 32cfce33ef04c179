package registry

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestParseReference(t *testing.T) {
	tests := []struct {
		in         string
		display    string
		identifier string // tag or digest used to fetch
		registry   string // go-containerregistry's registry name
		repository string
	}{
		{"registry", "docker.io/library/registry:latest", "latest", "index.docker.io", "library/registry"},
		{"registry:latest", "docker.io/library/registry:latest", "latest", "index.docker.io", "library/registry"},
		{"docker.io/registry:latest", "docker.io/library/registry:latest", "latest", "index.docker.io", "library/registry"},
		{"docker.io/library/registry", "docker.io/library/registry:latest", "latest", "index.docker.io", "library/registry"},
		{"index.docker.io/library/registry:2", "docker.io/library/registry:2", "2", "index.docker.io", "library/registry"},
		{"vaultwarden/server:1.30.0", "docker.io/vaultwarden/server:1.30.0", "1.30.0", "index.docker.io", "vaultwarden/server"},
		{"ghcr.io/owner/app", "ghcr.io/owner/app:latest", "latest", "ghcr.io", "owner/app"},
		{"127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1", "v1", "127.0.0.1:5000", "app"},
		{"localhost:5000/a/b/c:x", "localhost:5000/a/b/c:x", "x", "localhost:5000", "a/b/c"},
		{"localhost/app", "localhost/app:latest", "latest", "localhost", "app"},
		{"registry@sha256:" + hexA, "docker.io/library/registry@sha256:" + hexA, "sha256:" + hexA, "index.docker.io", "library/registry"},
		{"registry:2@sha256:" + hexA, "docker.io/library/registry:2@sha256:" + hexA, "sha256:" + hexA, "index.docker.io", "library/registry"},
		{"127.0.0.1:5000/app:v1@sha256:" + hexB, "127.0.0.1:5000/app:v1@sha256:" + hexB, "sha256:" + hexB, "127.0.0.1:5000", "app"},
		{"127.0.0.1:5000/app@sha256:" + hexB, "127.0.0.1:5000/app@sha256:" + hexB, "sha256:" + hexB, "127.0.0.1:5000", "app"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ref, err := ParseReference(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := DisplayName(ref); got != tt.display {
				t.Errorf("DisplayName = %q, want %q", got, tt.display)
			}
			if got := ref.Identifier(); got != tt.identifier {
				t.Errorf("Identifier = %q, want %q", got, tt.identifier)
			}
			if got := ref.Context().RegistryStr(); got != tt.registry {
				t.Errorf("registry = %q, want %q", got, tt.registry)
			}
			if got := ref.Context().RepositoryStr(); got != tt.repository {
				t.Errorf("repository = %q, want %q", got, tt.repository)
			}
			// Normalised: parsing the display name gives the same thing.
			again, err := ParseReference(DisplayName(ref))
			if err != nil || again.String() != ref.String() {
				t.Errorf("reparse of %q: %v, %v; want %q", DisplayName(ref), again, err, ref)
			}
			if _, isDigest := ref.(name.Digest); isDigest != strings.Contains(tt.in, "@") {
				t.Errorf("type %T for %q", ref, tt.in)
			}
		})
	}
}

func TestParseReferenceErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty image reference"},
		{" registry", "white space"},
		{"registry :1", "white space"},
		{"https://ghcr.io/owner/app", "URL scheme"},
		{"Registry:latest", "invalid image reference"},
		{"registry:", "invalid image reference"},
		{"registry@sha256:abc", "invalid image reference"},
		{"registry@sha256:" + hexA + "@sha256:" + hexA, "invalid image reference"},
		{"registry:bad/tag", "invalid image reference"},
		{"127.0.0.1:5000//flt/small", `invalid image reference "127.0.0.1:5000//flt/small": empty path component at character 16: "127.0.0.1:5000/" is followed by another "/"`},
		{"127.0.0.1:5000/flt//small:1", `empty path component at character 20: "127.0.0.1:5000/flt/" is followed by another "/"`},
		{"127.0.0.1:5000//flt/small@sha256:" + hexA, "empty path component at character 16"},
		{"docker.io//alpine", `empty path component at character 11: "docker.io/" is followed`},
		{"/alpine", `empty path component at the start: the name begins with "/"`},
		{"alpine/", `empty path component at the end of the name: "alpine/" ends with "/"`},
		{"alpine/:3", `"alpine/" ends with "/"`},
		{"alpine/@sha256:" + hexA, `"alpine/" ends with "/"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseReference(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseReference(%q) error %v, want %q", tt.in, err, tt.want)
			}
			if !strings.Contains(err.Error(), "REPOSITORY") {
				t.Errorf("error %q does not show the syntax", err)
			}
		})
	}
}

func TestDisplayNameOfGGCRReferences(t *testing.T) {
	for in, want := range map[string]string{
		"alpine":                     "docker.io/library/alpine:latest",
		"alpine:3@sha256:" + hexA:    "docker.io/library/alpine:3@sha256:" + hexA,
		"quay.io/a/b@sha256:" + hexA: "quay.io/a/b@sha256:" + hexA,
		"index.docker.io/x/y:z":      "docker.io/x/y:z",
		"registry-1.docker.io/x/y:z": "registry-1.docker.io/x/y:z",
	} {
		ref, err := name.ParseReference(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := DisplayName(ref); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", in, got, want)
		}
	}
	if DisplayName(nil) != "" {
		t.Error("DisplayName(nil) not empty")
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"registry", "docker.io/library/registry:latest", "a:1@sha256:" + hexA, "127.0.0.1:5000/x", "localhost/a/b:c", "@", ":", "a@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s)
		if err != nil {
			return
		}
		d := DisplayName(ref)
		again, err := ParseReference(d)
		if err != nil {
			t.Fatalf("display name %q of %q does not parse: %v", d, s, err)
		}
		if DisplayName(again) != d || again.String() != ref.String() {
			t.Fatalf("%q: display %q reparses to %q (%q), want %q", s, d, DisplayName(again), again, ref)
		}
	})
}
