package main

import (
	"context"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Cases s0 to s4 (issue 16): a second machine from an image that a first
// machine was pulled from, so the cache holds it, on ext4 (today's way: the
// image unpacked again) and on btrfs, free and strict. Each measures the
// second pull's time and the disk it took (the file system's used bytes
// before and after, synced), against s0, a full pull with an empty cache.
// Every pull skips the init probe (--no-probe): it is the same for all,
// and not what the store changes.

// secondCases are the cases, for the case table.
func secondCases() []*benchCase {
	mk := func(id, title, fs string, strict bool) *benchCase {
		flags := "--no-probe"
		if strict {
			flags += " --strict"
		}
		return &benchCase{
			ID: id, Title: title, fs: fs,
			Cmd:      "mbctl --config CONF machines pull --yes --quiet " + flags + " REF m2 (after the same pull of REF as m1)",
			registry: true, mbctl: true, tools: []string{"mkfs." + fs},
			run: func(ctx context.Context, b *bench, dir string) (measurement, error) {
				return runSecondMachine(ctx, b, dir, strict)
			},
		}
	}
	return []*benchCase{
		{
			ID: "s0", Title: "mbctl machines pull, cold cache (ext4)", fs: "ext4",
			Cmd:      "mbctl --config CONF machines pull --yes --quiet --no-probe REF m1 (empty cache)",
			registry: true, mbctl: true,
			run: runFirstMachine,
		},
		mk("s1", "2nd machine, free, ext4 (unpacked again)", "ext4", false),
		mk("s2", "2nd machine, strict, ext4", "ext4", true),
		mk("s3", "2nd machine, free, btrfs (snapshot)", "btrfs", false),
		mk("s4", "2nd machine, strict, btrfs", "btrfs", true),
	}
}

// runFirstMachine is s0: the first machine of the image, empty cache.
func runFirstMachine(ctx context.Context, b *bench, dir string) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	return timedPull(ctx, b, conf, dir, "m1", false)
}

// runSecondMachine is s1 to s4: untimed, machine m1 is pulled from the
// image; timed, m2 from the same image.
func runSecondMachine(ctx context.Context, b *bench, dir string, strict bool) (measurement, error) {
	conf, err := writeMbctlConfig(b, dir)
	if err != nil {
		return measurement{}, err
	}
	if _, err := timedPull(ctx, b, conf, dir, "m1", strict); err != nil {
		return measurement{}, fmt.Errorf("pulling the first machine: %w", err)
	}
	return timedPull(ctx, b, conf, dir, "m2", strict)
}

// timedPull times `machines pull` of the bench image as machine name and
// measures the disk it took.
func timedPull(ctx context.Context, b *bench, conf, dir, name string, strict bool) (measurement, error) {
	args := []string{"machines", "pull", "--yes", "--quiet", "--no-probe"}
	if strict {
		args = append(args, "--strict")
	}
	spec, err := mbctlCommand(b, conf, dir, append(args, b.ref, name)...)
	if err != nil {
		return measurement{}, err
	}
	syncAll()
	before, err := usedBytes(dir)
	if err != nil {
		return measurement{}, err
	}
	res, err := runTimed(ctx, spec)
	if err != nil {
		return measurement{result: res}, err
	}
	syncAll()
	after, err := usedBytes(dir)
	if err != nil {
		return measurement{}, err
	}
	disk := after - before
	return measurement{result: res, tree: filepath.Join(dir, "mbctl", "machines", name), extraDisk: &disk}, nil
}

// usedBytes is what the file system holding dir uses.
func usedBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}
