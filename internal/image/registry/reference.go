package registry

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is the name users write for Docker Hub; go-containerregistry
// calls it name.DefaultRegistry ("index.docker.io").
const dockerHub = "docker.io"

// referenceSyntax is shown with every reference error.
const referenceSyntax = "want [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. docker.io/library/alpine:3.20"

// ParseReference parses an image reference the way docker does:
//
//   - a name without a registry is on Docker Hub, and a Docker Hub name
//     without a namespace is in "library": "registry", "docker.io/registry"
//     and "docker.io/library/registry" are all
//     docker.io/library/registry;
//   - the tag defaults to "latest";
//   - "NAME@sha256:HEX" is pinned by digest;
//   - "NAME:TAG@sha256:HEX" is pinned by the digest, which alone selects the
//     image; the tag is kept for display (see DisplayName).
//
// The result is normalised: its String() is the full name
// ("index.docker.io/library/registry:latest"); use DisplayName to show it.
func ParseReference(s string) (name.Reference, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("empty image reference: %s", referenceSyntax)
	case strings.ContainsAny(s, " \t\r\n"):
		return nil, fmt.Errorf("image reference %q contains white space: %s", s, referenceSyntax)
	case strings.Contains(s, "://"):
		return nil, fmt.Errorf("image reference %q must not start with a URL scheme: %s", s, referenceSyntax)
	}
	if err := checkPathComponents(s); err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w; %s", s, err, referenceSyntax)
	}
	if base, _, pinned := strings.Cut(s, "@"); pinned {
		d, err := name.NewDigest(s)
		if err != nil {
			return nil, fmt.Errorf("invalid image reference %q: %w; %s", s, err, referenceSyntax)
		}
		repo := d.Context()
		tag := explicitTag(base)
		if tag == "" {
			return repo.Digest(d.DigestStr()), nil
		}
		// name.Digest drops the tag but keeps the string it was parsed
		// from, so parse the normalised form with the tag in it.
		nd, err := name.NewDigest(repo.Name() + ":" + tag + "@" + d.DigestStr())
		if err != nil {
			return nil, fmt.Errorf("invalid image reference %q: %w; %s", s, err, referenceSyntax)
		}
		return nd, nil
	}
	t, err := name.NewTag(s)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w; %s", s, err, referenceSyntax)
	}
	return t.Context().Tag(t.TagStr()), nil
}

// DisplayName returns ref as users write it, with Docker Hub called
// docker.io: "docker.io/library/registry:latest",
// "127.0.0.1:5000/app@sha256:...", or "quay.io/x/y:1.0@sha256:..." for a
// reference with both a tag and a digest.
func DisplayName(ref name.Reference) string {
	if ref == nil {
		return ""
	}
	base := registryDisplayName(ref.Context().RegistryStr()) + "/" + ref.Context().RepositoryStr()
	id := ref.Identifier()
	if !isDigest(id) {
		return base + ":" + id
	}
	if tag := digestTag(ref); tag != "" {
		return base + ":" + tag + "@" + id
	}
	return base + "@" + id
}

// registryDisplayName maps go-containerregistry's name for Docker Hub to
// the one users write.
func registryDisplayName(reg string) string {
	if reg == name.DefaultRegistry {
		return dockerHub
	}
	return reg
}

// isDigest reports whether a reference identifier is a digest: tags cannot
// contain ':'.
func isDigest(identifier string) bool { return strings.Contains(identifier, ":") }

// digestTag returns the tag written before the digest of a digest
// reference ("NAME:TAG@sha256:..."), or "".
func digestTag(ref name.Reference) string {
	base, _, ok := strings.Cut(ref.String(), "@")
	if !ok {
		return ""
	}
	return explicitTag(base)
}

// explicitTag returns the tag of "NAME:TAG", or "" when name has none (a
// colon before the last slash belongs to a registry port) or it is invalid.
func explicitTag(s string) string {
	last := s[strings.LastIndex(s, "/")+1:]
	if !strings.Contains(last, ":") {
		return ""
	}
	t, err := name.NewTag(s)
	if err != nil {
		return ""
	}
	return t.TagStr()
}

// checkPathComponents refuses an empty component in the name part of a
// reference ("127.0.0.1:5000//app", "/app", "app/", "app/:1"), which
// go-containerregistry accepts and sends as is, and says where it is.
func checkPathComponents(s string) error {
	nameEnd := len(s)
	if i := strings.IndexByte(s, '@'); i >= 0 {
		nameEnd = i
	}
	if i := strings.LastIndexByte(s[:nameEnd], '/'); strings.Contains(s[i+1:nameEnd], ":") {
		// A colon after the last slash starts the tag.
		nameEnd = i + 1 + strings.IndexByte(s[i+1:nameEnd], ':')
	}
	n := s[:nameEnd]
	switch {
	case strings.HasPrefix(n, "/"):
		return errors.New(`empty path component at the start: the name begins with "/"`)
	case strings.HasSuffix(n, "/"):
		return fmt.Errorf("empty path component at the end of the name: %q ends with \"/\"", n)
	}
	if i := strings.Index(n, "//"); i >= 0 {
		return fmt.Errorf("empty path component at character %d: %q is followed by another \"/\"", i+2, n[:i+1])
	}
	return nil
}
