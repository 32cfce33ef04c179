// Package pushed pushes a test image to a test registry and resolves it
// the way mbctl does, for tests that need a registry.Image. (Not in
// ociimage or testbed/registry: the tests of internal/image/registry use
// those, and this imports it.)
package pushed

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// ImageT pushes img as ref and returns it resolved.
func ImageT(t testing.TB, img v1.Image, ref string) *registry.Image {
	t.Helper()
	if _, err := ociimage.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	return ResolveT(t, ref)
}

// ResolveT resolves ref with mbctl's registry client.
func ResolveT(t testing.TB, ref string) *registry.Image {
	t.Helper()
	r, err := registry.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	im, err := registry.Resolve(t.Context(), r, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return im
}
