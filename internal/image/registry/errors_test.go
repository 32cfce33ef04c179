package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestDescribe(t *testing.T) {
	f := failure{
		op:       "fetching the manifest of reg.example:5000/app:1",
		endpoint: "reg.example:5000",
		host:     "reg.example:5000",
		image:    "reg.example:5000/app:1",
		manifest: true,
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name     string
		err      error
		f        failure
		kind     error
		contains []string
	}{
		{"401", &transport.Error{StatusCode: 401}, f, ErrUnauthorized, []string{
			`authentication required for reg.example:5000 (HTTP 401): log in with "docker login reg.example:5000" or "podman login reg.example:5000", or set REGISTRY_AUTH_FILE`}},
		{"403", &transport.Error{StatusCode: 403}, f, ErrUnauthorized, []string{"(HTTP 403)"}},
		{"401 with credentials", &transport.Error{StatusCode: 401}, withCreds(f), ErrUnauthorized, []string{
			"authentication failed for reg.example:5000 (HTTP 401): the registry rejected the stored credentials; log in again"}},
		{"401 docker hub", &transport.Error{StatusCode: 401}, hub(f), ErrUnauthorized, []string{
			"authentication required for docker.io (HTTP 401)", "Docker Hub also answers this for repositories that do not exist"}},
		{"404 manifest", &transport.Error{StatusCode: 404}, f, ErrNotFound, []string{
			"image reg.example:5000/app:1 not found (repository or tag does not exist, or you lack access)"}},
		{"404 blob", &transport.Error{StatusCode: 404}, blob(f), nil, []string{"fetching layer 1", "from reg.example:5000"}},
		{"500", &transport.Error{StatusCode: 500}, f, nil, []string{"fetching the manifest of reg.example:5000/app:1 from reg.example:5000"}},
		{"TLS", fmt.Errorf("Get: %w", x509.UnknownAuthorityError{}), f, nil, []string{
			"TLS verification of reg.example:5000 failed", "registries.ca_file", "registries.insecure"}},
		{"plain HTTP refused", &plainHTTPError{host: "reg.example:5000"}, f, nil, []string{"refusing plain HTTP to reg.example:5000", "registries.insecure"}},
		{"HTTP answer to HTTPS", errors.New(`Get "https://reg.example:5000/v2/": http: server gave HTTP response to HTTPS client`), f, nil, []string{
			"answers plain HTTP, not HTTPS; list reg.example:5000 in registries.insecure"}},
		{"connection refused", refused, f, nil, []string{"cannot connect to reg.example:5000: connection refused"}},
		{"DNS", &net.DNSError{Err: "no such host", Name: "reg.example", IsNotFound: true}, f, nil, []string{"cannot resolve the host of reg.example:5000"}},
		{"canceled", fmt.Errorf("Get: %w", context.Canceled), f, context.Canceled, []string{"fetching the manifest"}},
		{"other", errors.New("boom"), f, nil, []string{"fetching the manifest of reg.example:5000/app:1 from reg.example:5000: boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := describe(tt.err, tt.f)
			for _, c := range tt.contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("error %q does not contain %q", err, c)
				}
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("error %q is not %v", err, tt.kind)
			}
			for _, k := range []error{ErrUnauthorized, ErrNotFound} {
				if k != tt.kind && errors.Is(err, k) {
					t.Errorf("error %q is %v", err, k)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error %q does not wrap the cause", err)
			}
		})
	}
	if describe(nil, f) != nil {
		t.Error("describe(nil) != nil")
	}
}

func withCreds(f failure) failure { f.hasCredentials = func() bool { return true }; return f }

func hub(f failure) failure {
	f.host, f.endpoint, f.image = "docker.io", "docker.io", "docker.io/library/nope:1"
	return f
}

func blob(f failure) failure {
	f.op, f.manifest = "fetching layer 1 (sha256:...) of reg.example:5000/app:1", false
	return f
}
