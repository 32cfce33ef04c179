package ociimage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PushOption configures Push and PushIndex.
type PushOption func(*pushOptions) error

// pushOptions holds the settings of one push.
type pushOptions struct {
	auth     authn.Authenticator
	caFile   string
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	insecure bool
}

// WithDialer makes the connections with dial, e.g. from inside a testbed
// host's network namespace (testbed.Host.DialContext).
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) PushOption {
	return func(o *pushOptions) error {
		o.dial = dial
		return nil
	}
}

// WithPlainHTTP allows plain HTTP to any registry (HTTPS is tried first).
func WithPlainHTTP() PushOption {
	return func(o *pushOptions) error {
		o.insecure = true
		return nil
	}
}

// WithBasicAuth sends the user name and password with HTTP basic
// authentication (or exchanges them for a token if the registry asks).
// Default: anonymous.
func WithBasicAuth(user, password string) PushOption {
	return func(o *pushOptions) error {
		if user == "" {
			return fmt.Errorf("basic auth: empty user name")
		}
		o.auth = &authn.Basic{Username: user, Password: password}
		return nil
	}
}

// WithCACert trusts the CA certificates in the PEM file path in addition to
// the system roots. Default: system roots only.
func WithCACert(path string) PushOption {
	return func(o *pushOptions) error {
		if path == "" {
			return fmt.Errorf("CA certificate: empty path")
		}
		o.caFile = path
		return nil
	}
}

// collect applies opts to the defaults.
func collect(opts []PushOption) (pushOptions, error) {
	o := pushOptions{auth: authn.Anonymous}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// remoteOptions turns o into go-containerregistry options.
func remoteOptions(ctx context.Context, o pushOptions) ([]remote.Option, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.dial != nil {
		tr.DialContext = o.dial
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA certificate: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading CA certificate %s: no PEM certificate found", o.caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(o.auth),
		remote.WithTransport(tr),
	}, nil
}

// parseRef parses ref; a registry on 127.0.0.1, ::1 or localhost, or any
// with insecure, may be plain HTTP (HTTPS is tried first).
func parseRef(ref string, insecure bool) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	host := r.Context().RegistryStr()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if insecure || host == "127.0.0.1" || host == "::1" || host == "[::1]" || host == "localhost" {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
		}
	}
	return r, nil
}

// Push uploads img to ref (e.g. "127.0.0.1:5000/app:latest") and returns
// the manifest digest.
func Push(ctx context.Context, img v1.Image, ref string, opts ...PushOption) (v1.Hash, error) {
	return push(ctx, img, ref, opts)
}

// pushable is an image or an index.
type pushable interface {
	remote.Taggable
	Digest() (v1.Hash, error)
}

func push(ctx context.Context, t pushable, ref string, opts []PushOption) (v1.Hash, error) {
	o, err := collect(opts)
	if err != nil {
		return v1.Hash{}, err
	}
	r, err := parseRef(ref, o.insecure)
	if err != nil {
		return v1.Hash{}, err
	}
	ropts, err := remoteOptions(ctx, o)
	if err != nil {
		return v1.Hash{}, err
	}
	d, err := t.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("computing digest for %s: %w", ref, err)
	}
	if err := remote.Push(r, t, ropts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return d, nil
}

// Index returns a multi-platform index of images, keyed by platform
// "os/arch[/variant]" (e.g. "linux/arm64/v8"), in key order. The keys set
// the index's platform fields; the images' own config platform is not
// checked, so tests can build inconsistent indexes on purpose. The index is
// an OCI image index when every image is an OCI manifest, else a Docker
// manifest list.
func Index(images map[string]v1.Image) (v1.ImageIndex, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("building index: no images")
	}
	keys := make([]string, 0, len(images))
	for k := range images {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	allOCI := true
	adds := make([]mutate.IndexAddendum, 0, len(keys))
	for _, k := range keys {
		p, err := v1.ParsePlatform(k)
		if err != nil {
			return nil, fmt.Errorf("building index: platform %q: %w", k, err)
		}
		img := images[k]
		mt, err := img.MediaType()
		if err != nil {
			return nil, fmt.Errorf("building index: media type of %s image: %w", k, err)
		}
		allOCI = allOCI && mt == types.OCIManifestSchema1
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: mt, Platform: p},
		})
	}
	var idx v1.ImageIndex = empty.Index
	if !allOCI {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// PushIndex uploads the images and a multi-platform index of them (see
// Index) to ref and returns the index digest.
func PushIndex(ctx context.Context, ref string, images map[string]v1.Image, opts ...PushOption) (v1.Hash, error) {
	idx, err := Index(images)
	if err != nil {
		return v1.Hash{}, err
	}
	return push(ctx, idx, ref, opts)
}
