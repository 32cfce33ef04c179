package ociimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// HostProgram returns the entries that put the host's program at path into
// an image at the same path, with the shared libraries and the dynamic
// loader it needs (as ldd lists them, each at the path ldd names). It is
// how the tests package real Debian programs (e.g. docker-registry) as
// images.
func HostProgram(ctx context.Context, path string) ([]Entry, error) {
	files := []string{path}
	// ldd fails for a static program and lists nothing: it needs nothing
	// more. A missing path is reported by the read below.
	out, _ := exec.CommandContext(ctx, "ldd", path).Output()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
		f := strings.Fields(sc.Text())
		for i, w := range f {
			if strings.HasPrefix(w, "/") && (i == 0 || f[i-1] == "=>") {
				files = append(files, w)
			}
		}
	}
	var entries []Entry
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("packaging %s: %w", f, err)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("packaging %s: %w", f, err)
		}
		entries = append(entries, File(strings.TrimPrefix(filepath.Clean(f), "/"), data, int64(fi.Mode().Perm())))
	}
	return entries, nil
}

// RegistryConfig is the configuration of RegistryApp's registry.
const RegistryConfig = `version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: "[::]:5000"
`

// RegistryApp packages the host's real docker-registry (Debian package
// docker-registry) as an OCI image the way the upstream image is made:
// Cmd serve CONFIG, Volume /var/lib/registry, port 5000; on the busybox
// base of BusyboxApp, so that its machine has a shell.
func RegistryApp(ctx context.Context, busyboxPath string) (v1.Image, error) {
	prog, err := HostProgram(ctx, "/usr/bin/docker-registry")
	if err != nil {
		return nil, err
	}
	l, err := Layer(append(prog,
		File("etc/docker/registry/config.yml", []byte(RegistryConfig), 0o644),
		Dir("var/lib/registry", 0o755))...)
	if err != nil {
		return nil, err
	}
	return BusyboxApp(busyboxPath, AppConfig{
		Entrypoint: []string{"/usr/bin/docker-registry"}, Cmd: []string{"serve", "/etc/docker/registry/config.yml"},
		Volumes: []string{"/var/lib/registry"}, ExposedPorts: []string{"5000/tcp"},
	}, l)
}
