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
)

// HostProgram returns the entries that put the host's program at path into
// an image at the same path, with the shared libraries and the dynamic
// loader it needs (as ldd lists them, each at the path ldd names). It is
// how the tests package real Debian programs (e.g. docker-registry) as
// images.
func HostProgram(ctx context.Context, path string) ([]Entry, error) {
	files := []string{path}
	out, err := exec.CommandContext(ctx, "ldd", path).Output()
	if err != nil {
		// "not a dynamic executable": a static program needs nothing more.
		if !bytes.Contains(out, []byte("not a dynamic")) {
			if _, statErr := os.Stat(path); statErr != nil {
				return nil, statErr
			}
		}
	}
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
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("packaging %s: %w", f, err)
		}
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		entries = append(entries, File(strings.TrimPrefix(filepath.Clean(f), "/"), data, int64(fi.Mode().Perm())))
	}
	return entries, nil
}
