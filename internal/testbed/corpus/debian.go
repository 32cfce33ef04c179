package corpus

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// pkgFiles selects files of an installed Debian package.
type pkgFiles struct {
	// Package is the package's name ("postgresql-15").
	Package string
	// Include are the paths taken: "/dir/" is everything below dir,
	// "/dir/name*" every path that starts so, anything else one path.
	// None means every file of the package.
	Include []string
	// Exclude are paths (written the same way) left out of what Include
	// takes.
	Exclude []string
}

// takes reports whether s selects the host path p.
func (s pkgFiles) takes(p string) bool {
	if len(s.Include) > 0 && !hasAnyPrefix(p, s.Include) {
		return false
	}
	return !hasAnyPrefix(p, s.Exclude) && !hasAnyPrefix(p, noise)
}

// noise are the parts of packages an image does not need.
var noise = []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/lintian/", "/usr/share/bug/", "/usr/share/locale/"}

// hasAnyPrefix reports whether p is one of patterns, or below one that
// ends in "/", or starts like one that ends in "*".
func hasAnyPrefix(p string, patterns []string) bool {
	for _, pat := range patterns {
		switch {
		case strings.HasSuffix(pat, "/"):
			if strings.HasPrefix(p, pat) || p == strings.TrimSuffix(pat, "/") {
				return true
			}
		case strings.HasSuffix(pat, "*"):
			if strings.HasPrefix(p, strings.TrimSuffix(pat, "*")) {
				return true
			}
		case p == pat:
			return true
		}
	}
	return false
}

// hostFile is one file, link or directory of the host to put into an image.
type hostFile struct {
	// host is the host path; image the path in the image (relative, clean).
	host, image string
}

// collection is the plan of a layer made of host files: what goes where,
// and which packages own it. Nothing is read until entries is called.
type collection struct {
	files    map[string]hostFile // by image path
	packages map[string]bool     // owners, "name" or "name:arch"
	visited  map[string]bool     // host paths added
	elfs     []string            // dynamically linked programs and libraries to resolve
}

func newCollection() *collection {
	return &collection{files: map[string]hostFile{}, packages: map[string]bool{}, visited: map[string]bool{}}
}

// collect plans a layer of the selected package files, the host files at
// the image paths of renames (image path → host path), and the shared
// libraries all of their programs need (as ldd resolves them on the host),
// each at the path it has on the host after the host's merged-/usr links.
// Every file must belong to an installed package.
func collect(ctx context.Context, sel []pkgFiles, renames map[string]string) (*collection, error) {
	c := newCollection()
	for _, s := range sel {
		paths, err := packageFiles(ctx, s.Package)
		if err != nil {
			return nil, err
		}
		c.packages[s.Package] = true
		n := 0
		for _, p := range paths {
			if !s.takes(p) {
				continue
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil, fmt.Errorf("package %s: %w", s.Package, err)
			}
			if fi.IsDir() {
				continue // made as the parent of what it holds
			}
			if err := c.add(p); err != nil {
				return nil, fmt.Errorf("package %s: %w", s.Package, err)
			}
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("package %s: nothing under %v", s.Package, s.Include)
		}
	}
	var renamed []string
	for image, host := range renames {
		real, err := filepath.EvalSymlinks(host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		c.files[cleanRel(image)] = hostFile{host: real, image: cleanRel(image)}
		c.visited[real] = true
		renamed = append(renamed, real)
		if dyn, err := isDynamicELF(real); err != nil {
			return nil, err
		} else if dyn {
			c.elfs = append(c.elfs, real)
		}
	}
	libs, err := sharedLibraries(ctx, lddCover(c.elfs))
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		if err := c.add(l); err != nil {
			return nil, err
		}
	}
	owners, err := owningPackages(ctx, append(libs, renamed...))
	if err != nil {
		return nil, err
	}
	for _, o := range owners {
		c.packages[o] = true
	}
	return c, nil
}

// add plans the host path p (a file or a symlink, followed to its end)
// at its canonical place: its directory with every symlink resolved.
func (c *collection) add(p string) error {
	for hops := 0; ; hops++ {
		if hops > 40 {
			return fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		if c.visited[p] {
			return nil
		}
		c.visited[p] = true
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return fmt.Errorf("resolving the directory of %s: %w", p, err)
		}
		canon := filepath.Join(dir, filepath.Base(p))
		fi, err := os.Lstat(canon)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			// A link to a directory: the link is kept, what the
			// directory holds comes only where it is selected.
			return nil
		}
		img := cleanRel(canon)
		c.files[img] = hostFile{host: canon, image: img}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if fi.Mode().IsRegular() {
				dyn, err := isDynamicELF(canon)
				if err != nil {
					return err
				}
				if dyn {
					c.elfs = append(c.elfs, canon)
				}
			}
			return nil
		}
		target, err := os.Readlink(canon)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		p = target
	}
}

// entries reads the planned files: parent directories first (with the
// host's modes), then files and links in path order, all owned by root.
func (c *collection) entries() ([]ociimage.Entry, error) {
	dirs := map[string]bool{}
	for img := range c.files {
		for d := path.Dir(img); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var out []ociimage.Entry
	for _, d := range sortedKeys(dirs) {
		mode := int64(0o755)
		if fi, err := os.Stat("/" + d); err == nil && fi.IsDir() {
			mode = int64(fi.Mode().Perm())
		}
		out = append(out, ociimage.Dir(d, mode))
	}
	for _, img := range sortedKeys(c.files) {
		f := c.files[img]
		fi, err := os.Lstat(f.host)
		if err != nil {
			return nil, err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(f.host)
			if err != nil {
				return nil, err
			}
			out = append(out, ociimage.Symlink(img, target))
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(f.host)
			if err != nil {
				return nil, err
			}
			out = append(out, ociimage.File(img, b, int64(fi.Mode().Perm())))
		default:
			return nil, fmt.Errorf("%s: neither a file nor a link (%v)", f.host, fi.Mode())
		}
	}
	return out, nil
}

// packageFiles lists the paths dpkg records for the installed package pkg.
func packageFiles(ctx context.Context, pkg string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-L", pkg).Output()
	if err != nil {
		return nil, fmt.Errorf("listing the files of package %s (is it installed? scripts/install-deps.sh): %w", pkg, exitDetail(err))
	}
	var paths []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if p := sc.Text(); strings.HasPrefix(p, "/") && p != "/." {
			paths = append(paths, p)
		}
	}
	return paths, sc.Err()
}

// lddCover picks from elfs the files whose libraries, as ldd lists them
// with all they load in turn, are those of every file: a file whose direct
// needs (DT_NEEDED) all appeared in an earlier pick adds nothing, as the
// loader resolves a library by its name alone (unless the file has a
// RUNPATH or RPATH of its own, which is always picked). ldd costs some 40 ms
// a file, and postgres has a hundred plugins that need only libc.
func lddCover(elfs []string) []string {
	covered := map[string]bool{}
	var picks []string
	for _, p := range elfs {
		needed, own, err := elfNeeds(p)
		pick := err != nil || own
		for _, n := range needed {
			if !covered[n] {
				pick = true
			}
		}
		if !pick {
			continue
		}
		picks = append(picks, p)
		for _, n := range needed {
			covered[n] = true
		}
	}
	return picks
}

// elfNeeds returns the libraries the ELF file p names (DT_NEEDED) and
// whether it has a search path of its own (DT_RUNPATH, DT_RPATH).
func elfNeeds(p string) (needed []string, ownPath bool, err error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	needed, err = f.ImportedLibraries()
	if err != nil {
		return nil, false, err
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		if v, err := f.DynString(tag); err == nil && len(v) > 0 {
			ownPath = true
		}
	}
	return needed, ownPath, nil
}

// sharedLibraries returns the libraries (and the dynamic loader) that the
// programs and libraries in elfs load, as ldd resolves them on the host.
func sharedLibraries(ctx context.Context, elfs []string) ([]string, error) {
	if len(elfs) == 0 {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", elfs...).Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("ldd of %d files: %w", len(elfs), exitDetail(err))
	}
	seen := map[string]bool{}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "=> not found") {
			return nil, fmt.Errorf("ldd: a library is missing on the host: %s", strings.TrimSpace(line))
		}
		// "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "\t/lib64/ld-linux-x86-64.so.2 (0x...)"; "file:" heads a section.
		f := strings.Fields(line)
		for i, w := range f {
			if strings.HasPrefix(w, "/") && (i == 0 || f[i-1] == "=>") && !strings.HasSuffix(w, ":") && !seen[w] {
				seen[w] = true
				libs = append(libs, w)
			}
		}
	}
	return libs, sc.Err()
}

// owningPackages returns the packages that own paths. With a merged /usr a
// library may be recorded under /lib or /usr/lib: both are asked. A path
// no package owns is an error: the corpus is made of Debian packages only.
func owningPackages(ctx context.Context, paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	var ask []string
	for _, p := range paths {
		ask = append(ask, p)
		if alt, ok := usrAlternative(p); ok {
			ask = append(ask, alt)
		}
		if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
			ask = append(ask, real)
		}
	}
	// dpkg-query exits 1 when some path has no owner; its output still
	// names the others.
	out, _ := exec.CommandContext(ctx, "dpkg-query", append([]string{"-S"}, ask...)...).Output()
	owned := map[string]bool{}
	pkgs := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "diversion ") {
			continue
		}
		names, p, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		owned[p] = true
		for _, n := range strings.Split(names, ", ") {
			pkgs[n] = true
		}
	}
	var orphans []string
	for _, p := range paths {
		alt, _ := usrAlternative(p)
		real, _ := filepath.EvalSymlinks(p)
		if !owned[p] && !owned[alt] && !owned[real] {
			orphans = append(orphans, p)
		}
	}
	if len(orphans) > 0 {
		return nil, fmt.Errorf("no installed Debian package owns %s", strings.Join(orphans, ", "))
	}
	return sortedKeys(pkgs), nil
}

// usrAlternative is p's other name under a merged /usr: /lib/x ↔ /usr/lib/x.
func usrAlternative(p string) (string, bool) {
	for _, top := range []string{"/bin/", "/sbin/", "/lib/", "/lib64/", "/lib32/", "/libx32/"} {
		if strings.HasPrefix(p, top) {
			return "/usr" + p, true
		}
		if strings.HasPrefix(p, "/usr"+top) {
			return strings.TrimPrefix(p, "/usr"), true
		}
	}
	return "", false
}

// versions returns "name=version" for each installed package.
func versions(ctx context.Context, pkgs []string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	args := append([]string{"-W", "-f", "${binary:Package}=${Version}\\n"}, pkgs...)
	out, err := exec.CommandContext(ctx, "dpkg-query", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("asking dpkg for the versions of %s: %w", strings.Join(pkgs, " "), exitDetail(err))
	}
	lines := strings.Fields(string(out))
	sort.Strings(lines)
	return lines, nil
}

// isDynamicELF reports whether p is an ELF file with a dynamic section
// (a program with an interpreter, or a shared library).
func isDynamicELF(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return false, nil
	}
	e, err := elf.NewFile(f)
	if err != nil {
		return false, nil // not an ELF file after all
	}
	defer e.Close()
	for _, prog := range e.Progs {
		if prog.Type == elf.PT_DYNAMIC {
			return true, nil
		}
	}
	return false, nil
}

// exitDetail adds a failed command's stderr to its error.
func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// cleanRel makes p a clean path relative to the image's root.
func cleanRel(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
