package ociimage

import (
	"debug/elf"
	"errors"
	"fmt"
	"os/exec"
)

// StaticBusybox returns the path of a statically linked busybox: "busybox"
// on PATH (Debian's busybox-static installs /usr/bin/busybox) or
// /bin/busybox. A dynamically linked busybox is rejected, since it cannot
// run in a rootfs without a libc.
func StaticBusybox() (string, error) {
	var errs []error
	candidates := []string{"busybox", "/bin/busybox", "/usr/bin/busybox"}
	for _, c := range candidates {
		p, err := exec.LookPath(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		static, err := isStatic(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !static {
			errs = append(errs, fmt.Errorf("%s is dynamically linked", p))
			continue
		}
		return p, nil
	}
	return "", fmt.Errorf("finding a static busybox (install busybox-static): %w", errors.Join(errs...))
}

// isStatic reports whether the ELF file at p has no program interpreter.
func isStatic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, fmt.Errorf("reading ELF file %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
