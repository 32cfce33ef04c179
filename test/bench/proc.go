package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// commandTimeout bounds every command the benchmark runs.
const commandTimeout = 15 * time.Minute

// cmdSpec is one command: argv and extra environment.
type cmdSpec struct {
	argv []string
	env  []string
	// log, if set, is a file that gets a copy of the command's output.
	log string
}

// result is what one timed run measured.
type result struct {
	wall      time.Duration
	maxRSSKiB int64 // the largest of the commands (each includes its reaped children)
	user, sys time.Duration
}

// command builds an exec.Cmd in its own process group that is killed as a
// group when ctx ends and when the benchmark dies.
func command(ctx context.Context, spec cmdSpec) *exec.Cmd {
	cmd := exec.CommandContext(ctx, spec.argv[0], spec.argv[1:]...)
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// rusageEnv makes the benchmark binary act as rusageWrapper.
const rusageEnv = "MBCTL_BENCH_RUSAGE_WRAPPER"

// runTimed runs the commands one after the other and measures the wall
// clock from the start of the first to the end of the last. Their output
// is kept only for an error message.
//
// Each command runs under rusageWrapper (this binary started again), which
// reports the command's resource use. Reading the command's own rusage
// here would be wrong: Go starts children with vfork, and Linux carries the
// high-water RSS of the memory a process had before exec (here: this whole
// benchmark's) into the ru_maxrss of what it execs.
func runTimed(ctx context.Context, specs ...cmdSpec) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	var res result
	start := time.Now()
	for _, spec := range specs {
		ru, err := runWrapped(ctx, self, spec)
		res.maxRSSKiB = max(res.maxRSSKiB, ru.maxRSSKiB)
		res.user += ru.user
		res.sys += ru.sys
		if err != nil {
			return res, err
		}
	}
	res.wall = time.Since(start)
	return res, nil
}

// runWrapped runs spec under rusageWrapper and returns what it reported.
func runWrapped(ctx context.Context, self string, spec cmdSpec) (result, error) {
	var out tailBuffer
	var sink io.Writer = &out
	if spec.log != "" {
		f, err := os.OpenFile(spec.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		sink = io.MultiWriter(&out, f)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return result{}, err
	}
	defer r.Close()
	cmd := command(ctx, cmdSpec{argv: append([]string{self}, spec.argv...), env: append(spec.env, rusageEnv+"=1")})
	cmd.Stdout, cmd.Stderr = sink, sink
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		return result{}, commandError(spec.argv, err, "")
	}
	w.Close()
	report := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		report <- b
	}()
	err = cmd.Wait()
	var res result
	var maxrss, utime, stime int64
	if _, perr := fmt.Sscan(string(<-report), &maxrss, &utime, &stime); perr == nil {
		res = result{maxRSSKiB: maxrss, user: time.Duration(utime) * time.Microsecond, sys: time.Duration(stime) * time.Microsecond}
	}
	if err != nil {
		return res, commandError(spec.argv, err, out.String())
	}
	return res, nil
}

// rusageWrapper runs argv with the wrapper's stdio and environment (less
// rusageEnv), writes "MAXRSS_KIB UTIME_US STIME_US" of it (its children
// included) to fd 3, and exits with its status. It is small, so the RSS
// the command inherits at exec (see runTimed) is a few MB at most.
func rusageWrapper(argv []string) int {
	report := os.NewFile(3, "rusage")
	syscall.CloseOnExec(3)
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "rusage wrapper: no command")
		return 127
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, rusageEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		return 127
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && report != nil {
		fmt.Fprintf(report, "%d %d %d\n", ru.Maxrss,
			ru.Utime.Sec*1e6+ru.Utime.Usec, ru.Stime.Sec*1e6+ru.Stime.Usec)
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// runLogged runs one untimed command with its output appended to logPath.
func runLogged(ctx context.Context, logPath string, argv ...string) (string, error) {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var out tailBuffer
	cmd := command(ctx, cmdSpec{argv: argv})
	cmd.Stdout, cmd.Stderr = io.MultiWriter(f, &out), io.MultiWriter(f, &out)
	if err := cmd.Run(); err != nil {
		return out.String(), commandError(argv, err, "")
	}
	return out.String(), nil
}

// output runs a short untimed command and returns its trimmed stdout.
func output(ctx context.Context, argv ...string) (string, error) {
	return outputEnv(ctx, cmdSpec{argv: argv})
}

// outputEnv is output with an environment.
func outputEnv(ctx context.Context, spec cmdSpec) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stdout, stderr tailBuffer
	cmd := command(ctx, spec)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", commandError(spec.argv, err, stderr.String()+stdout.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// commandError says which command failed and its last line of output.
func commandError(argv []string, err error, out string) error {
	msg := lastLine(out)
	if msg == "" {
		return fmt.Errorf("%s: %w", filepath.Base(argv[0]), err)
	}
	return fmt.Errorf("%s: %w: %s", filepath.Base(argv[0]), err, msg)
}

// lastLine returns the last non-empty line of s, at most 300 bytes.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	return line
}

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct{ b []byte }

const tailMax = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if len(t.b) > tailMax {
		return string(t.b[len(t.b)-tailMax:])
	}
	return string(t.b)
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, nil
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of a
// mountinfo field.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeTree removes dir after detaching whatever is mounted below it (a
// debootstrap that was interrupted leaves proc and sysfs mounted in its
// target; a storage driver may leave a mount). If a mount cannot be
// detached, nothing is removed.
func removeTree(dir string) error {
	dir = filepath.Clean(dir)
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

// unmountUnder detaches everything mounted at or below dir.
func unmountUnder(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return fmt.Errorf("listing mounts below %s: %w", dir, err)
	}
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting %s (left in place with %s): %w", mp, dir, err)
		}
	}
	if mps, err := mountsUnder(dir); err != nil || len(mps) > 0 {
		return fmt.Errorf("still mounted below %s: %v %v", dir, mps, err)
	}
	return nil
}

// countEntries returns the number of paths below root (root excluded).
func countEntries(root string) (int, error) {
	n := -1
	err := filepath.WalkDir(root, func(_ string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}
