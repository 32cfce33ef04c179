package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrUnauthorized is matched (errors.Is) by errors for a registry that
// answered HTTP 401 or 403: the user has to log in, or log in again.
var ErrUnauthorized = errors.New("registry authentication required")

// ErrNotFound is matched (errors.Is) by errors for an image whose manifest
// the registry does not have (HTTP 404).
var ErrNotFound = errors.New("image not found")

// registryError carries a message written for the user and keeps the
// underlying error (and the kind, ErrUnauthorized or ErrNotFound) in the
// chain without repeating its protocol detail in the text.
type registryError struct {
	msg   string
	kind  error
	cause error
}

func (e *registryError) Error() string { return e.msg }

// Unwrap makes errors.Is and errors.As see the kind and the cause.
func (e *registryError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.cause}
	}
	return []error{e.kind, e.cause}
}

// failure describes one failed request for describe.
type failure struct {
	// op says what was being done, e.g. "fetching the manifest of
	// docker.io/library/x:1".
	op string
	// endpoint is what was asked: a registry host or a mirror URL.
	endpoint string
	// host is the host to log in to.
	host string
	// image is the display name of the image, for "not found".
	image string
	// manifest is true when a 404 means the image does not exist.
	manifest bool
	// hasCredentials reports whether a credential was sent; may be nil.
	hasCredentials func() bool
}

// describe turns an error from go-containerregistry into one that says what
// failed where and what to do. Credentials never appear: go-containerregistry
// redacts URLs, and the messages here name only hosts and images.
func describe(err error, f failure) error {
	if err == nil {
		return nil
	}
	err = redactURLError(err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s from %s: %w", f.op, f.endpoint, err)
	}
	if isTLSVerifyError(err) {
		return fmt.Errorf("%s: TLS verification of %s failed: %w; if the registry uses a private CA, set registries.ca_file (or SSL_CERT_FILE) to its certificate, and if it has no valid certificate at all, list %s in registries.insecure", f.op, f.endpoint, err, f.host)
	}
	var plain *plainHTTPError
	if errors.As(err, &plain) {
		return fmt.Errorf("%s from %s: %w", f.op, f.endpoint, err)
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("%s: %s answers plain HTTP, not HTTPS; list %s in registries.insecure to allow that: %w", f.op, f.endpoint, f.host, err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return unauthorizedError(err, te.StatusCode, f)
		case te.StatusCode == http.StatusNotFound && f.manifest:
			return &registryError{
				msg:   fmt.Sprintf("image %s not found (repository or tag does not exist, or you lack access)", f.image),
				kind:  ErrNotFound,
				cause: err,
			}
		}
		return fmt.Errorf("%s from %s: %w", f.op, f.endpoint, err)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot connect to %s: connection refused; check that the registry runs at that address: %w", f.op, f.endpoint, err)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("%s: cannot resolve the host of %s; check the name and DNS: %w", f.op, f.endpoint, err)
	}
	var (
		stall *StallError
		ne    net.Error
	)
	if errors.As(err, &stall) {
		// It says what did not come.
		return fmt.Errorf("%s from %s: %w", f.op, f.endpoint, err)
	}
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s: %s did not answer in time: %w", f.op, f.endpoint, err)
	}
	return fmt.Errorf("%s from %s: %w", f.op, f.endpoint, err)
}

// unauthorizedError is the error for HTTP 401/403.
func unauthorizedError(cause error, status int, f failure) error {
	login := fmt.Sprintf(`"docker login %s" or "podman login %s"`, f.host, f.host)
	var msg string
	if f.hasCredentials != nil && f.hasCredentials() {
		msg = fmt.Sprintf("authentication failed for %s (HTTP %d): the registry rejected the stored credentials; log in again with %s, or set REGISTRY_AUTH_FILE", f.host, status, login)
	} else {
		msg = fmt.Sprintf("authentication required for %s (HTTP %d): log in with %s, or set REGISTRY_AUTH_FILE", f.host, status, login)
	}
	if f.host == dockerHub && f.manifest {
		msg += "; Docker Hub also answers this for repositories that do not exist, so check the name " + f.image
	}
	return &registryError{msg: msg, kind: ErrUnauthorized, cause: cause}
}

// isTLSVerifyError reports whether err is a failed certificate check.
func isTLSVerifyError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
	)
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verify)
}

// loginHost is the host name to give "docker login" for a registry.
func loginHost(reg name.Registry) string {
	return registryDisplayName(reg.RegistryStr())
}

// urlRedacted is a *url.Error shown with its URL cut down to scheme, host
// and path: the query of a redirect target may hold a signature or a
// token (go-containerregistry redacts only some of its requests).
type urlRedacted struct {
	msg string
	err *url.Error
}

func (e *urlRedacted) Error() string { return e.msg }
func (e *urlRedacted) Unwrap() error { return e.err }

// redactURLError returns err, a request's error, with the query string
// and user info of its URL hidden.
func redactURLError(err error) error {
	ue, ok := err.(*url.Error)
	if !ok || ue.Err == nil {
		return err
	}
	return &urlRedacted{msg: fmt.Sprintf("%s %q: %v", ue.Op, safeURL(ue.URL), ue.Err), err: ue}
}
