// Package registry talks to container registries on top of
// go-containerregistry: it parses docker-style references, picks an
// endpoint (mirrors first, then the registry), resolves a reference to one
// platform's image manifest and config, and streams its layers.
//
// Transport policy: plain HTTP only to loopback hosts, to registries listed
// in Options.Insecure (which also skip TLS verification, like docker's
// insecure-registries) and to mirrors configured with an http:// URL; TLS
// trusts the system roots plus $SSL_CERT_FILE and Options.CAFile; proxies
// come from HTTP(S)_PROXY/NO_PROXY.
//
// Failing networks: every request has a response-header timeout and every
// response body an idle-read timeout (Options.ResponseHeaderTimeout,
// Options.IdleTimeout), redirects are bounded and loops refused
// (Options.MaxRedirects). Manifests are retried by go-containerregistry
// (408, 429, 5xx and network errors). Blob streams (Image.OpenLayer) retry
// on their own, with exponential backoff and Retry-After, and resume a cut
// or stalled download with a Range request where the registry honours it
// (Options.BlobAttempts, Options.RetryDelay).
package registry

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/man8s/mbctl/internal/image/mediatype"
)

// DefaultJobs is the number of layer streams open at once when
// Options.Jobs is zero.
const DefaultJobs = 4

// DefaultUserAgent is sent when Options.UserAgent is empty
// (go-containerregistry appends its own name and version).
const DefaultUserAgent = "mbctl"

// Defaults of the network options (see Options).
const (
	// DefaultBlobAttempts is how many times a blob is requested before its
	// download fails, when Options.BlobAttempts is zero.
	DefaultBlobAttempts = 5
	// DefaultRetryDelay is the wait before a blob's second attempt when
	// Options.RetryDelay is zero; it doubles for each further attempt.
	DefaultRetryDelay = time.Second
	// DefaultResponseHeaderTimeout bounds the wait for response headers
	// when Options.ResponseHeaderTimeout is zero.
	DefaultResponseHeaderTimeout = 30 * time.Second
	// DefaultIdleTimeout bounds the wait for more of a response body when
	// Options.IdleTimeout is zero.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultMaxRedirects is how many redirects a request may follow when
	// Options.MaxRedirects is zero.
	DefaultMaxRedirects = 10
)

// maxConfigSize bounds the image config blob.
const maxConfigSize = 64 << 20

// Compression names of Layer.Compression.
const (
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// layerCompression returns the compression of the layer media types
// Resolve accepts. Foreign and non-distributable layers are fetched by
// digest like the others; their URLs are ignored.
func layerCompression(mt types.MediaType) (string, bool) {
	switch mt {
	case types.DockerLayer, types.DockerForeignLayer, types.OCILayer, types.OCIRestrictedLayer:
		return CompressionGzip, true
	case types.OCILayerZStd, "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return CompressionZstd, true
	case types.DockerUncompressedLayer, types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer:
		return CompressionNone, true
	}
	return "", false
}

// Options configures Resolve. The zero value talks to the registries
// themselves, with credentials from DefaultKeychain, for the host's
// platform.
type Options struct {
	// Mirrors maps a registry host ("docker.io", "ghcr.io",
	// "127.0.0.1:5000") to mirror endpoints ("https://mirror.example.com",
	// "http://10.0.0.1:5000") tried in order before the registry. A mirror
	// serves the same repository paths as the registry. "docker.io",
	// "index.docker.io" and "registry-1.docker.io" all mean Docker Hub.
	// Default: none.
	Mirrors map[string][]string
	// Insecure lists registries ("host" for any port, or "host:port")
	// that may be reached over plain HTTP and whose TLS certificates are not
	// verified. Loopback hosts may always use plain HTTP (their
	// certificates are still verified). Default: none.
	Insecure []string
	// CAFile is a PEM file of CA certificates trusted in addition to the
	// system roots and $SSL_CERT_FILE. Default: none.
	CAFile string
	// Keychain finds credentials for a registry. Default: DefaultKeychain().
	Keychain authn.Keychain
	// Platform selects the image from a multi-platform index.
	// Default: DefaultPlatform(). An empty OS means runtime.GOOS.
	Platform v1.Platform
	// UserAgent is sent with every request. Default: DefaultUserAgent.
	UserAgent string
	// Log receives which endpoint is tried (debug) and failing mirrors
	// (warn). Default: discard.
	Log *slog.Logger
	// Jobs is how many layer streams (Image.OpenLayer) may be open at once;
	// OpenLayer waits for a free slot. It also sizes the connection pool.
	// Default: DefaultJobs.
	Jobs int

	// BlobAttempts is how many times one blob (a layer or the config) is
	// requested before its download fails. A cut connection, a stall (see
	// IdleTimeout, ResponseHeaderTimeout) and an HTTP 408, 429 or 5xx
	// answer each cost an attempt; the next one resumes at the first byte
	// not yet received, with an HTTP Range request (a registry that ignores
	// Range sends the blob from the start again, and the bytes already
	// received are skipped). Redirect loops, TLS and authentication errors,
	// missing blobs and content that fails its digest are not retried.
	// Default: DefaultBlobAttempts (5); 1 turns retrying off.
	BlobAttempts int
	// RetryDelay is the wait before a blob's second attempt; it doubles for
	// each further one, up to 30s, with 20% jitter, and a longer
	// Retry-After from the registry (429, 503) is honoured up to 2 minutes.
	// Default: DefaultRetryDelay (1s).
	RetryDelay time.Duration
	// ResponseHeaderTimeout bounds the wait for the headers of any
	// response (manifests, blobs, tokens), from sending the request.
	// Default: DefaultResponseHeaderTimeout (30s); negative: no limit.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next bytes of a response body:
	// a download that stalls for this long fails (a blob download then
	// resumes, see BlobAttempts). Default: DefaultIdleTimeout (30s);
	// negative: no limit.
	IdleTimeout time.Duration
	// MaxRedirects is how many redirects one request may follow; a
	// request that comes back to a URL it was redirected from fails at
	// once, as a loop. Default: DefaultMaxRedirects (10).
	MaxRedirects int
}

// Image is one platform's image as a registry (or a mirror) serves it.
type Image struct {
	// Ref is the reference resolved, as given (see ParseReference).
	Ref name.Reference
	// Source is the endpoint that served the image: a mirror as configured
	// ("https://mirror.example.com") or the registry host ("docker.io").
	// Layers come from the same endpoint.
	Source string
	// Digest is the digest of the selected image manifest (not of the
	// index).
	Digest v1.Hash
	// IndexDigest is the digest of the index the image was selected from,
	// or nil when Ref named an image manifest.
	IndexDigest *v1.Hash
	// Manifest is the parsed image manifest; RawManifest its bytes, whose
	// digest is Digest; MediaType the manifest media type (Docker schema 2
	// or OCI).
	Manifest    *v1.Manifest
	RawManifest []byte
	MediaType   types.MediaType
	// Config is the parsed image config; RawConfig its bytes, verified
	// against the digest in Manifest.
	Config    *v1.ConfigFile
	RawConfig []byte
	// Layers are the layers, bottom first.
	Layers []Layer

	repo  name.Repository
	host  string
	blobs *blobClient
}

// Layer is one layer of an Image.
type Layer struct {
	// Digest is the digest of the blob as stored (compressed).
	Digest v1.Hash
	// DiffID is the digest of the uncompressed tar, from the config.
	DiffID v1.Hash
	// Size is the size of the blob in bytes.
	Size int64
	// MediaType is the layer media type from the manifest.
	MediaType types.MediaType
	// Compression is CompressionGzip, CompressionZstd or CompressionNone.
	Compression string
}

// endpoint is one place to resolve a reference at.
type endpoint struct {
	// label is Image.Source: the mirror URL or the registry host.
	label string
	// ref is the reference on this endpoint.
	ref name.Reference
}

// session holds what Resolve builds once from Options.
type session struct {
	log      *slog.Logger
	platform v1.Platform
	policy   netPolicy
	mirrors  map[string][]mirrorEndpoint
	keychain authn.Keychain
	puller   *remote.Puller
	// transport is what the blob clients send through: the policy
	// transport with the user agent.
	transport http.RoundTripper
	// retry is the blob retry policy.
	retry retryPolicy
	// slots bounds the blob streams open at once (Options.Jobs).
	slots chan struct{}
}

// newSession validates o and builds the transport and puller.
func newSession(o Options) (*session, error) {
	s := &session{log: o.Log, keychain: o.Keychain, mirrors: map[string][]mirrorEndpoint{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.keychain == nil {
		s.keychain = DefaultKeychain()
	}
	s.platform = o.Platform
	switch {
	case s.platform.OS == "" && s.platform.Architecture == "":
		s.platform = DefaultPlatform()
	case s.platform.Architecture == "":
		return nil, fmt.Errorf("platform %q has no architecture; want OS/ARCH[/VARIANT]", s.platform.OS)
	case s.platform.OS == "":
		s.platform.OS = DefaultPlatform().OS
	}
	s.platform = normalizePlatform(s.platform)
	jobs := o.Jobs
	switch {
	case jobs == 0:
		jobs = DefaultJobs
	case jobs < 0:
		return nil, fmt.Errorf("registry jobs %d: must be positive", jobs)
	}
	s.slots = make(chan struct{}, jobs)
	switch {
	case o.BlobAttempts < 0:
		return nil, fmt.Errorf("registry blob attempts %d: must be positive", o.BlobAttempts)
	case o.RetryDelay < 0:
		return nil, fmt.Errorf("registry retry delay %s: must not be negative", o.RetryDelay)
	case o.MaxRedirects < 0:
		return nil, fmt.Errorf("registry redirect limit %d: must not be negative", o.MaxRedirects)
	}
	s.retry = retryPolicy{
		attempts: cmp.Or(o.BlobAttempts, DefaultBlobAttempts),
		delay:    cmp.Or(o.RetryDelay, DefaultRetryDelay),
		maxDelay: maxRetryDelay,
	}

	s.policy.plainMirrors = map[string]bool{}
	for _, e := range o.Insecure {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" || strings.ContainsAny(e, "/ \t@") {
			return nil, fmt.Errorf("insecure registry %q (registries.insecure): want host or host:port", e)
		}
		s.policy.insecure = append(s.policy.insecure, e)
	}
	keys := make([]string, 0, len(o.Mirrors))
	for k := range o.Mirrors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		host := mirrorKey(k)
		for _, m := range o.Mirrors[k] {
			me, err := parseMirror(m)
			if err != nil {
				return nil, fmt.Errorf("registries.mirrors for %s: %w", k, err)
			}
			if me.plain {
				s.policy.plainMirrors[me.host] = true
			}
			s.mirrors[host] = append(s.mirrors[host], me)
		}
	}

	tr, err := newPolicyTransport(o, s.policy, jobs, s.log)
	if err != nil {
		return nil, err
	}
	ua := o.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	// go-containerregistry wraps the puller's transport with its retries
	// of 408/429/5xx answers and network errors (for manifests), and with
	// the user agent; the blob clients (see blobClient) do their own
	// retrying, so they get only the user agent.
	s.transport = transport.NewUserAgent(tr, ua)
	s.puller, err = remote.NewPuller(
		remote.WithTransport(tr),
		remote.WithAuthFromKeychain(s.keychain),
		remote.WithUserAgent(ua),
		remote.WithJobs(jobs),
	)
	if err != nil {
		return nil, fmt.Errorf("setting up the registry client: %w", err)
	}
	return s, nil
}

// mirrorKey normalises an Options.Mirrors key to go-containerregistry's
// registry name.
func mirrorKey(k string) string {
	k = strings.ToLower(strings.TrimSpace(k))
	if authHost(k) == dockerHub {
		return name.DefaultRegistry
	}
	return k
}

// endpoints returns where to resolve ref: its mirrors in order, then the
// registry itself.
func (s *session) endpoints(ref name.Reference) ([]endpoint, error) {
	origin := ref.Context().Registry
	var eps []endpoint
	for _, m := range s.mirrors[origin.RegistryStr()] {
		r, err := s.rebase(ref, m.host)
		if err != nil {
			return nil, fmt.Errorf("mirror %s for %s: %w", m.label, registryDisplayName(origin.RegistryStr()), err)
		}
		eps = append(eps, endpoint{label: m.label, ref: r})
	}
	r, err := s.rebase(ref, origin.RegistryStr())
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", registryDisplayName(origin.RegistryStr()), err)
	}
	return append(eps, endpoint{label: registryDisplayName(origin.RegistryStr()), ref: r}), nil
}

// rebase returns ref's repository and tag or digest on the registry host,
// marked insecure when the policy allows plain HTTP to it (so
// go-containerregistry falls back to HTTP when HTTPS fails).
func (s *session) rebase(ref name.Reference, host string) (name.Reference, error) {
	var opts []name.Option
	if s.policy.plainHTTPAllowed(host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return nil, err
	}
	repo := reg.Repo(ref.Context().RepositoryStr())
	if id := ref.Identifier(); isDigest(id) {
		return repo.Digest(id), nil
	}
	return repo.Tag(ref.Identifier()), nil
}

// Resolve fetches the manifest (or index) of ref, selects the image for
// opts.Platform, and fetches and checks its config. It tries the mirrors of
// ref's registry in order, then the registry; a mirror that fails in any
// way is logged and skipped, and the image's layers come from the endpoint
// that served the manifest (Image.Source).
//
// Errors match ErrUnauthorized for HTTP 401/403 and ErrNotFound for a
// missing manifest. Docker schema 1 images, non-image artifacts and unknown
// layer media types are errors.
func Resolve(ctx context.Context, ref name.Reference, opts Options) (*Image, error) {
	if ref == nil {
		return nil, errors.New("resolving image: no reference")
	}
	s, err := newSession(opts)
	if err != nil {
		return nil, err
	}
	eps, err := s.endpoints(ref)
	if err != nil {
		return nil, err
	}
	var mirrorsTried []string
	for i, ep := range eps {
		s.log.Debug("resolving image", "image", DisplayName(ref), "endpoint", ep.label)
		im, err := s.resolveAt(ctx, ref, ep)
		if err == nil {
			s.log.Debug("resolved image", "image", DisplayName(ref), "endpoint", ep.label, "digest", im.Digest.String())
			return im, nil
		}
		if ctx.Err() == nil && i < len(eps)-1 {
			s.log.Warn("registry mirror failed; trying the next endpoint", "mirror", ep.label, "image", DisplayName(ref), "err", err)
			mirrorsTried = append(mirrorsTried, ep.label)
			continue
		}
		if len(mirrorsTried) > 0 {
			return nil, fmt.Errorf("%w (mirrors tried first: %s)", err, strings.Join(mirrorsTried, ", "))
		}
		return nil, err
	}
	return nil, fmt.Errorf("resolving %s: no endpoint to ask", DisplayName(ref))
}

// resolveAt resolves ref at one endpoint.
func (s *session) resolveAt(ctx context.Context, ref name.Reference, ep endpoint) (*Image, error) {
	image := DisplayName(ref)
	host := loginHost(ep.ref.Context().Registry)
	fail := func(op string, manifest bool) failure {
		return failure{
			op: op, endpoint: ep.label, host: host, image: image, manifest: manifest,
			hasCredentials: func() bool {
				a, err := authn.Resolve(ctx, s.keychain, ep.ref.Context())
				return err == nil && a != authn.Anonymous
			},
		}
	}

	desc, err := s.puller.Get(ctx, ep.ref)
	if err != nil {
		return nil, describe(err, fail("fetching the manifest of "+image, true))
	}
	im := &Image{
		Ref:         ref,
		Source:      ep.label,
		Digest:      desc.Digest,
		RawManifest: desc.Manifest,
		MediaType:   mediatype.Of(desc.MediaType, desc.Manifest),
		repo:        ep.ref.Context(),
		host:        host,
		blobs:       s.blobClient(ep.ref.Context(), ep.label),
	}
	if im.MediaType.IsSchema1() {
		return nil, errSchema1(image)
	}
	if im.MediaType.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, fmt.Errorf("parsing the index of %s from %s: %w", image, ep.label, err)
		}
		child, err := selectManifest(idx, s.platform, image)
		if err != nil {
			return nil, err
		}
		indexDigest := desc.Digest
		im.IndexDigest = &indexDigest
		op := fmt.Sprintf("fetching manifest %s (%s) of %s", child.Digest, platformString(*child.Platform), image)
		cdesc, err := s.puller.Get(ctx, im.repo.Digest(child.Digest.String()))
		if err != nil {
			return nil, describe(err, fail(op, false))
		}
		im.Digest, im.RawManifest = cdesc.Digest, cdesc.Manifest
		im.MediaType = mediatype.Of(cdesc.MediaType, cdesc.Manifest)
		if im.MediaType.IsSchema1() {
			return nil, errSchema1(image)
		}
		if im.MediaType.IsIndex() {
			return nil, fmt.Errorf("%s: the index entry for %s is another index; nested indexes are not supported", image, platformString(*child.Platform))
		}
	}
	if !im.MediaType.IsImage() {
		return nil, fmt.Errorf("%s has manifest media type %q, which is not a container image (want a Docker schema 2 or OCI image manifest or index)", image, im.MediaType)
	}
	if im.Manifest, err = v1.ParseManifest(bytes.NewReader(im.RawManifest)); err != nil {
		return nil, fmt.Errorf("parsing the manifest of %s from %s: %w", image, ep.label, err)
	}
	if err := s.fetchConfig(ctx, im, fail("fetching the config of "+image, false)); err != nil {
		return nil, err
	}
	if err := im.buildLayers(image); err != nil {
		return nil, err
	}
	if im.IndexDigest == nil && im.Config.OS != "" && im.Config.Architecture != "" {
		// A single-platform image must still run here.
		got := v1.Platform{OS: im.Config.OS, Architecture: im.Config.Architecture, Variant: im.Config.Variant}
		if _, ok := platformScore(s.platform, normalizePlatform(got)); !ok {
			return nil, noPlatformError(s.platform, image, []string{platformString(got)})
		}
	}
	return im, nil
}

// errSchema1 is the error for a Docker schema 1 manifest.
func errSchema1(image string) error {
	return fmt.Errorf("%s: docker schema1 images are not supported; re-push the image with a current docker/skopeo", image)
}

// fetchConfig fetches, verifies and parses the config blob of im.
func (s *session) fetchConfig(ctx context.Context, im *Image, f failure) error {
	desc := im.Manifest.Config
	if !desc.MediaType.IsConfig() {
		return fmt.Errorf("%s is not a container image: its config has media type %q (want %s or %s)", f.image, desc.MediaType, types.DockerConfigJSON, types.OCIConfigJSON)
	}
	if desc.Size < 0 || desc.Size > maxConfigSize {
		return fmt.Errorf("%s: config size %d is out of range (at most %d bytes)", f.image, desc.Size, maxConfigSize)
	}
	rc, err := im.openBlob(ctx, "config", desc.Digest, desc.Size)
	if err != nil {
		return describe(err, f)
	}
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		return describe(err, f)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("parsing the config of %s: %w", f.image, err)
	}
	im.Config, im.RawConfig = cfg, raw
	return nil
}

// buildLayers fills im.Layers from the manifest and the config's diff IDs.
func (im *Image) buildLayers(image string) error {
	ml := im.Manifest.Layers
	diffIDs := im.Config.RootFS.DiffIDs
	if len(diffIDs) != len(ml) {
		return fmt.Errorf("%s is inconsistent: the manifest lists %d layers but the config has %d diff IDs", image, len(ml), len(diffIDs))
	}
	im.Layers = make([]Layer, len(ml))
	for i, d := range ml {
		comp, ok := layerCompression(d.MediaType)
		if !ok {
			return fmt.Errorf("%s: layer %d (%s) has unsupported media type %q", image, i+1, d.Digest, d.MediaType)
		}
		if d.Size < 0 {
			return fmt.Errorf("%s: layer %d (%s) has negative size %d", image, i+1, d.Digest, d.Size)
		}
		im.Layers[i] = Layer{
			Digest:      d.Digest,
			DiffID:      diffIDs[i],
			Size:        d.Size,
			MediaType:   d.MediaType,
			Compression: comp,
		}
	}
	return nil
}

// OpenLayer opens the stream of layer l (one of im.Layers) from the
// endpoint that served the image (im.Source). The stream is the blob as
// stored: compressed as l.Compression says, not decompressed.
//
// The stream is verified, once, here: it is hashed as it is read, and it is
// cut off after l.Size bytes. When the content does not match l.Digest or
// l.Size, the final Read returns an error instead of io.EOF. A caller that
// read the stream to io.EOF without error has exactly the blob l.Digest and
// must not hash it again; a caller that stops early gets no verification.
//
// The stream survives a failing network: a cut connection, a stalled
// transfer or a 5xx answer makes it ask again (Options.BlobAttempts times
// in all, waiting longer each time) and go on where it stopped, with a
// Range request; the hash goes on over the bytes already read. The caller
// sees one uninterrupted stream, or the error of the last attempt.
//
// At most Options.Jobs streams are open at once; OpenLayer waits for a free
// slot (or ctx), so close every stream. ctx bounds the whole download.
func (im *Image) OpenLayer(ctx context.Context, l Layer) (io.ReadCloser, error) {
	if im.blobs == nil {
		return nil, errors.New("opening layer: the image was not made by Resolve")
	}
	i := slices.IndexFunc(im.Layers, func(x Layer) bool { return x.Digest == l.Digest })
	if i < 0 {
		return nil, fmt.Errorf("opening layer %s: not a layer of %s", l.Digest, DisplayName(im.Ref))
	}
	l = im.Layers[i]
	rc, err := im.openBlob(ctx, "layer", l.Digest, l.Size)
	if err != nil {
		return nil, describe(err, failure{
			op:       fmt.Sprintf("fetching layer %d (%s) of %s", i+1, l.Digest, DisplayName(im.Ref)),
			endpoint: im.Source,
			host:     im.host,
			image:    DisplayName(im.Ref),
		})
	}
	return rc, nil
}

// openBlob opens the verified, resuming stream of the blob digest (a
// "layer" or the "config", for messages), expected to be size bytes, from
// the image's endpoint.
func (im *Image) openBlob(ctx context.Context, what string, digest v1.Hash, size int64) (io.ReadCloser, error) {
	if im.blobs == nil {
		return nil, errors.New("opening blob: the image was not made by Resolve")
	}
	return im.blobs.open(ctx, what, digest, size)
}
