package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
)

// Input is one probe: an unpacked image and how man8s-init runs it.
type Input struct {
	// Rootfs is the unpacked image. It is never written: it is the lower
	// layer of the probe's overlay.
	Rootfs string
	// Env is the machine's man8env.env in exec-pid1 mode, written to the
	// probe's /man8env.env.
	Env []byte
	// Setenv are the variables nspawn gives the machine (the settings'
	// Environment=), WorkingDir its working dir (WorkingDirectory=).
	Setenv     []string
	WorkingDir string
	// StopSignal is what a stop sends the app (MAN8S_STOP_SIGNAL; zero
	// means SIGTERM).
	StopSignal syscall.Signal
	// Scratch is the dir the probe's own dir is made in (paths.scratch).
	Scratch string
	// Journal, if set, records the probe's dir before it is made, so that
	// the next mbctl run removes what a killed one left.
	Journal *journal.Journal
	// BeforeStep, if set, runs with StepRunning once the entrypoint runs as
	// PID 1; an error ends the probe there (tests, mbctl's fault hook).
	BeforeStep func(step string) error
}

// StepRunning is the step name BeforeStep gets while the machine runs.
const StepRunning = "probe:running"

// Config tunes probes. Zero values get the defaults.
type Config struct {
	// Init is what gets installed into the overlay: man8s-init, and the
	// busybox that makes the child PID 1 inherits (without one, reaping
	// is not tested).
	Init initinstall.Sources
	// Timeout bounds the probe from its start until the machine is told
	// to stop (default 10s); stopping it takes at most 5s more.
	Timeout time.Duration
	// Settle is how long the entrypoint runs before its signals are read,
	// and when the adopted child exits (default 1s).
	Settle time.Duration
	// ReapWait is how long PID 1 has to reap the child (default 1s).
	ReapWait time.Duration
	// StopWait is how long PID 1 has to exit after its stop signal when
	// it handles it (default 3s); a PID 1 that does not handle it gets
	// 300ms (the kernel drops the signal).
	StopWait time.Duration
	// Nspawn is the systemd-nspawn command (default "systemd-nspawn").
	Nspawn string
	// Host says whether nspawn can use the system bus (default: this
	// host's, machine.DetectHostInit).
	Host *machine.HostInit
	Log  *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, 10*time.Second)
	def(&c.Settle, time.Second)
	def(&c.ReapWait, time.Second)
	def(&c.StopWait, 3*time.Second)
	if c.Nspawn == "" {
		c.Nspawn = "systemd-nspawn"
	}
	if c.Host == nil {
		h := machine.DetectHostInit("/")
		c.Host = &h
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrTimeout is returned (wrapped) when a probe hits Config.Timeout.
var ErrTimeout = errors.New("the probe timed out")

// uidRange is the size of the user namespace's uid and gid range.
const uidRange = 0x10000

// The bases a probe's uid range is picked from: above systemd-nspawn's
// own picks (0x00080000-0x6FFFFFFF), below the range systemd reserves at
// 0x7FFE0000.
const (
	baseMin = 0x70000000
	baseMax = 0x7FFE0000
)

// Run probes in, as the package doc says. A probe that cannot run (no
// nspawn, no idmapped mounts, the app does not start) or hits Config.Timeout
// returns an error; the machine is gone and the probe's dir removed either
// way. Run needs root.
func Run(ctx context.Context, in Input, cfg Config) (f *Findings, err error) {
	cfg = cfg.withDefaults()
	if in.StopSignal == 0 {
		in.StopSignal = syscall.SIGTERM
	}
	if err := check(in, cfg); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("%w after %s", ErrTimeout, cfg.Timeout))
	defer cancel()
	dir, base, err := claimDir(in)
	if err != nil {
		return nil, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the probe's dir: %w", rerr))
		}
	}()
	type result struct {
		f   *Findings
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The mount namespace is this thread's alone, and nspawn's parent
		// death signal fires when this thread ends: the thread is never
		// unlocked, so it ends with this goroutine, after nspawn.
		runtime.LockOSThread()
		r := &run{in: in, cfg: cfg, dir: dir, base: base, pid1fd: -1, strayfd: -1}
		f, err := r.run(ctx)
		done <- result{f, err}
	}()
	res := <-done
	if res.f != nil {
		res.f.Took = time.Since(start)
	}
	return res.f, res.err
}

// check refuses inputs the probe cannot use.
func check(in Input, cfg Config) error {
	if in.Rootfs == "" || in.Scratch == "" || len(in.Env) == 0 {
		return errors.New("probing: no rootfs, scratch dir or environment given")
	}
	if cfg.Init.Init == "" {
		return errors.New("probing: no man8s-init to install")
	}
	// The overlay's options are a comma-separated list of ':'-separated
	// paths inside the scratch dir.
	if strings.ContainsAny(in.Scratch, ",:\\") {
		return fmt.Errorf("probing: the scratch dir %q holds ',', ':' or '\\', which overlay mount options cannot carry", in.Scratch)
	}
	return nil
}

// claimDir makes the probe's dir in the scratch dir, named by the base of
// a uid range no other probe uses (the name claims it), journaled first.
func claimDir(in Input) (string, int, error) {
	if err := os.MkdirAll(in.Scratch, 0o700); err != nil {
		return "", 0, fmt.Errorf("probing: %w", err)
	}
	for range 20 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", 0, err
		}
		slots := uint32((baseMax - baseMin) / uidRange)
		base := baseMin + int(binary.LittleEndian.Uint32(b[:])%slots)*uidRange
		dir := filepath.Join(in.Scratch, fmt.Sprintf("probe-%08x", base))
		if in.Journal != nil {
			if err := in.Journal.Log(journal.Record{Op: journal.OpDir, Path: dir}); err != nil {
				return "", 0, err
			}
		}
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, base, nil
		}
		if in.Journal != nil {
			if cerr := in.Journal.Log(journal.Record{Op: journal.OpCancel, Path: dir}); cerr != nil {
				return "", 0, errors.Join(err, cerr)
			}
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", 0, fmt.Errorf("probing: creating %s: %w", dir, err)
		}
	}
	return "", 0, fmt.Errorf("probing: no free uid range in %s", in.Scratch)
}

// run is the state of one probe, on its locked thread.
type run struct {
	in   Input
	cfg  Config
	dir  string
	base int
	out  tail

	cmd    *exec.Cmd
	exited chan struct{} // closed when nspawn has exited
	nspawn int

	// mounts are what setUp mounted in the thread's namespace, in order.
	mounts []string

	pid1, pid1fd int
	stray        int
	strayfd      int
	// The files whose execution is the probe's, not the app's.
	initID, busyboxID, nspawnID fileID
	haveBusybox                 bool
}

// Paths in the probe's dir.
func (r *run) path(p string) string { return filepath.Join(r.dir, p) }

func (r *run) run(ctx context.Context) (f *Findings, err error) {
	defer func() {
		if serr := r.stopMachine(); serr != nil {
			err = errors.Join(err, serr)
		}
		for _, fd := range []int{r.pid1fd, r.strayfd} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	if err := r.setUp(); err != nil {
		return nil, fmt.Errorf("probing: %w", err)
	}
	if err := r.start(); err != nil {
		return nil, fmt.Errorf("probing: %w", err)
	}
	f = &Findings{StopSignal: r.in.StopSignal, Stop: Stop{Signal: r.in.StopSignal, Status: -1}}
	err = r.observe(ctx, f)
	f.Output = r.out.String()
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrTimeout) {
			err = cause
		}
		return f, fmt.Errorf("probing: %w", err)
	}
	return f, nil
}

// setUp makes the thread's mount namespace, the idmapped image, the
// overlay and what goes into it.
func (r *run) setUp() error {
	userns, err := userNamespace(r.base)
	if err != nil {
		return fmt.Errorf("creating a user namespace for uids %d-%d: %w", r.base, r.base+uidRange-1, err)
	}
	defer unix.Close(userns)
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("creating a mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mount namespace private: %w", err)
	}
	for _, d := range []string{"lower", "upper", "work", "root"} {
		if err := os.Mkdir(r.path(d), 0o755); err != nil {
			return err
		}
	}
	// The upper layer's root is the machine's /, owned by its root.
	if err := os.Chown(r.path("upper"), r.base, r.base); err != nil {
		return err
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, r.in.Rootfs, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("opening %s: %w", r.in.Rootfs, err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("idmapping %s (does its file system support idmapped mounts?): %w", r.in.Rootfs, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, r.path("lower"), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mounting the idmapped image: %w", err)
	}
	r.mounts = append(r.mounts, r.path("lower"))
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", r.path("lower"), r.path("upper"), r.path("work"))
	if err := unix.Mount("overlay", r.path("root"), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting the overlay: %w", err)
	}
	r.mounts = append(r.mounts, r.path("root"))
	// nspawn keeps its locks and a propagation dir per machine in
	// /run/systemd/nspawn; here they vanish with the namespace.
	if fi, err := os.Stat(nspawnRun); err == nil && fi.IsDir() {
		if err := unix.Mount("tmpfs", nspawnRun, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
			return fmt.Errorf("covering %s: %w", nspawnRun, err)
		}
		r.mounts = append(r.mounts, nspawnRun)
	}
	root := r.path("root")
	res, err := initinstall.Install(root, r.cfg.Init)
	if err != nil {
		return err
	}
	r.haveBusybox = res.Busybox != ""
	if err := os.WriteFile(filepath.Join(root, man8env.EnvPath), r.in.Env, 0o600); err != nil {
		return fmt.Errorf("writing the environment: %w", err)
	}
	// What the probe added belongs to the machine's root, as everything
	// from the image does through the idmapped layer.
	if err := shiftOwners(r.path("upper"), root, r.base); err != nil {
		return err
	}
	if r.initID, err = statID(filepath.Join(root, man8env.InitPath)); err != nil {
		return err
	}
	if r.haveBusybox {
		if r.busyboxID, err = statID(filepath.Join(root, man8env.BusyboxPath)); err != nil {
			return err
		}
	}
	return nil
}

// nspawnRun is where systemd-nspawn keeps its runtime state.
const nspawnRun = "/run/systemd/nspawn"

// userNamespace returns a user namespace that maps 0-65535 to base: that of
// a child made for it, which is stopped by ptrace at its exec and never
// runs, then killed.
func userNamespace(base int) (int, error) {
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: uidRange}}
	cmd := exec.Command("/proc/self/exe")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER, UidMappings: m, GidMappings: m,
		Ptrace: true, Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return fd, err
}

// shiftOwners gives every file in the upper layer that is owned by a host
// uid or gid below the range the same id inside it. It changes them through
// the overlay at merged, whose inodes would otherwise keep the old owners.
func shiftOwners(upper, merged string, base int) error {
	return filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		uid, gid := int(st.Uid), int(st.Gid)
		if (uid >= uidRange && gid >= uidRange) || st.Mode&unix.S_IFMT == unix.S_IFCHR {
			return nil // the machine's already, or a whiteout
		}
		if uid < uidRange {
			uid += base
		}
		if gid < uidRange {
			gid += base
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		q := filepath.Join(merged, rel)
		if err := unix.Lchown(q, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", q, err)
		}
		if d.Type().IsRegular() && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			return unix.Chmod(q, st.Mode&0o7777) // chown cleared them
		}
		return nil
	})
}

// start starts systemd-nspawn on the overlay.
func (r *run) start() error {
	argv := nspawnArgs(r.cfg.Nspawn, machineName(r.base), r.path("root"), r.base, *r.cfg.Host, r.in, r.wrapper())
	r.cfg.Log.Debug("probe: starting the machine", "argv", strings.Join(argv, " "))
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	// Its own process group: a Ctrl-C at the terminal reaches mbctl, which
	// stops the machine in order. SIGTERM if this thread dies: nspawn then
	// SIGKILLs PID 1 and cleans up (a SIGKILL of nspawn would leave PID 1
	// running).
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", r.cfg.Nspawn, err)
	}
	r.nspawn = r.cmd.Process.Pid
	r.exited = make(chan struct{})
	go func() {
		_ = r.cmd.Wait()
		close(r.exited)
	}()
	var err error
	if r.nspawnID, err = exeID(r.nspawn); err != nil && !r.hasExited() {
		return err
	}
	return nil
}

// wrapper is PID 1's command: with busybox, a shell that leaves a child
// behind for the entrypoint to inherit, then execs man8s-init.
func (r *run) wrapper() []string {
	if !r.haveBusybox {
		return []string{man8env.InitPath}
	}
	bb := man8env.BusyboxPath
	return []string{bb, "sh", "-c", fmt.Sprintf("%s sleep %.3f & exec %s", bb, r.cfg.Settle.Seconds(), man8env.InitPath)}
}

// machineName names the probe's machine (its hostname inside).
func machineName(base int) string { return fmt.Sprintf("mbctl-probe-%08x", base) }

// nspawnArgs is the probe's systemd-nspawn command line: the settings of a
// machine in exec-pid1 mode, without network, machined or settings files.
func nspawnArgs(nspawn, name, root string, base int, h machine.HostInit, in Input, command []string) []string {
	argv := []string{nspawn, "--quiet", "--register=no"}
	if !h.Bus {
		argv = append(argv, "--keep-unit")
	}
	argv = append(argv,
		"--settings=no", "--machine="+name, "--directory="+root,
		"--private-network",
		fmt.Sprintf("--private-users=%d:%d", base, uidRange), "--private-users-ownership=off",
		"--console=read-only", "--kill-signal=SIGKILL",
		"--resolv-conf=off", "--timezone=off", "--link-journal=no",
	)
	if in.WorkingDir != "" {
		argv = append(argv, "--chdir="+in.WorkingDir)
	}
	for _, kv := range in.Setenv {
		argv = append(argv, "--setenv="+kv)
	}
	return append(argv, command...)
}

func (r *run) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// nspawnStatus is nspawn's exit status (PID 1's, passed on), or -1.
func (r *run) nspawnStatus() int {
	if r.cmd.ProcessState == nil {
		return -1
	}
	return r.cmd.ProcessState.ExitCode()
}

// errEnded is returned when the machine ended before the app ran.
func (r *run) errEnded(what string) error {
	<-r.exited
	return fmt.Errorf("%s: systemd-nspawn exited with status %d%s", what, r.nspawnStatus(), r.out.excerpt())
}

// execLine is in man8s-init's line for the exec of the entrypoint in
// exec-pid1 mode (internal/guest/boot: "app: exec [...] as PID 1, ...").
const execLine = "] as PID 1, "

// waitChannel is where in the kernel process pid sleeps (/proc/PID/wchan),
// or "".
func waitChannel(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/wchan", procRoot, pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// tick is how often the probe looks.
const tick = 10 * time.Millisecond

// poll calls cond every tick until it is true (true), d has passed or the
// machine has exited (false), or ctx ends (its error).
func (r *run) poll(ctx context.Context, d time.Duration, cond func() bool) (bool, error) {
	deadline := time.Now().Add(d)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if cond() {
			return true, nil
		}
		if time.Now().After(deadline) || r.hasExited() {
			return cond(), nil
		}
		select {
		case <-ctx.Done():
			return false, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// observe finds PID 1, waits for the entrypoint, and watches it.
func (r *run) observe(ctx context.Context, f *Findings) error {
	forever := time.Hour // bounded by ctx
	ok, err := r.poll(ctx, forever, r.findPID1)
	if err != nil {
		return err
	}
	if !ok {
		return r.errEnded("the machine did not start")
	}
	var execAt time.Time
	ok, err = r.poll(ctx, forever, func() bool {
		id, err := exeID(r.pid1)
		if err != nil || id == r.nspawnID || id == r.initID || (r.haveBusybox && id == r.busyboxID) {
			return false
		}
		execAt = time.Now()
		return true
	})
	if err != nil {
		return err
	}
	if !ok {
		// Too fast to be seen: man8s-init says when it execs.
		if !strings.Contains(r.out.String(), execLine) {
			return r.errEnded("man8s-init did not start the entrypoint")
		}
		<-r.exited
		f.Early = &Exit{Status: r.nspawnStatus()}
		return nil
	}
	r.cfg.Log.Debug("probe: the entrypoint runs", "pid", r.pid1)
	if r.haveBusybox {
		if _, err := r.poll(ctx, 200*time.Millisecond, r.findStray); err != nil {
			return err
		}
	}
	if r.in.BeforeStep != nil {
		if err := r.in.BeforeStep(StepRunning); err != nil {
			return err
		}
	}

	// Settle: read the signals until Settle has passed.
	read := func() {
		st, err := readStatus(r.pid1)
		if err != nil || st.State == 'Z' {
			return
		}
		w := waitChannel(r.pid1)
		if r.alive(r.pid1fd) {
			f.Caught, f.Ignored, f.Blocked, f.SigWait = st.Caught, st.Ignored, st.Block, strings.HasPrefix(w, "do_sigtimedwait")
		}
	}
	read()
	if _, err := r.poll(ctx, time.Until(execAt.Add(r.cfg.Settle)), func() bool { read(); return !r.alive(r.pid1fd) }); err != nil {
		return err
	}
	if early, err := r.endedEarly(ctx, f, execAt); early || err != nil {
		return err
	}

	// Reap: the child exits about now; PID 1 has ReapWait to reap it.
	if r.strayfd >= 0 {
		if err := r.watchReap(ctx, f); err != nil {
			return err
		}
		if early, err := r.endedEarly(ctx, f, execAt); early || err != nil {
			return err
		}
	}
	read()
	f.Reap.Zombies = r.zombies()

	// Stop.
	wait := r.cfg.StopWait
	if !f.MayTake(r.in.StopSignal) {
		wait = min(wait, 300*time.Millisecond) // the kernel drops it
	}
	if err := unix.PidfdSendSignal(r.pid1fd, unix.Signal(r.in.StopSignal), nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			_, err := r.endedEarly(ctx, f, execAt)
			return err
		}
		return fmt.Errorf("sending %s to PID 1: %w", signals.Name(r.in.StopSignal), err)
	}
	sent := time.Now()
	f.Stop.Sent = true
	ok, err = r.poll(ctx, wait, func() bool { return !r.alive(r.pid1fd) })
	if err != nil {
		return err
	}
	f.Stop.After = time.Since(sent)
	if ok {
		f.Stop.Exited = true
		f.Stop.Status = r.statusAfterExit(ctx)
	}
	return nil
}

// endedEarly records an app that has exited by itself; it reports whether
// it had.
func (r *run) endedEarly(ctx context.Context, f *Findings, execAt time.Time) (bool, error) {
	if r.alive(r.pid1fd) {
		return false, nil
	}
	f.Early = &Exit{After: time.Since(execAt), Status: r.statusAfterExit(ctx)}
	f.Reap.Tested = false
	return true, nil
}

// statusAfterExit waits a little for nspawn to pass on PID 1's exit
// status.
func (r *run) statusAfterExit(ctx context.Context) int {
	select {
	case <-r.exited:
		return r.nspawnStatus()
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	return -1
}

// findPID1 looks for nspawn's child that is PID 1 of its own namespace,
// and holds it by a pidfd.
func (r *run) findPID1() bool {
	kids, err := children(r.nspawn)
	if err != nil {
		return false
	}
	for _, k := range kids {
		if fd, ok := holdIf(k, func(st status) bool { return st.PPid == r.nspawn && st.inOwnNamespaceAs() == 1 }); ok {
			r.pid1, r.pid1fd = k, fd
			return true
		}
	}
	return false
}

// findStray looks for PID 1's child that runs the probe's busybox: the
// one the wrapper left behind.
func (r *run) findStray() bool {
	kids, err := children(r.pid1)
	if err != nil {
		return false
	}
	for _, k := range kids {
		if id, err := exeID(k); err != nil || id != r.busyboxID {
			continue
		}
		if fd, ok := holdIf(k, func(st status) bool { return st.PPid == r.pid1 }); ok {
			r.stray, r.strayfd = k, fd
			return true
		}
	}
	return false
}

// holdIf opens a pidfd for pid and keeps it if pid's status, read after
// the open, passes ok (so that the fd is of the process that was checked).
func holdIf(pid int, ok func(status) bool) (int, bool) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, false
	}
	st, err := readStatus(pid)
	if err != nil || !ok(st) || !alive(fd) {
		unix.Close(fd)
		return -1, false
	}
	return fd, true
}

// alive reports whether the process of pidfd fd has not exited (a zombie
// has).
func alive(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n == 0
}

func (r *run) alive(fd int) bool { return fd >= 0 && alive(fd) }

// reaped reports whether the exited process of pidfd fd is gone: its
// parent waited for it.
func reaped(fd int) bool {
	return errors.Is(unix.PidfdSendSignal(fd, 0, nil, 0), unix.ESRCH)
}

// watchReap waits for the adopted child to exit, then for PID 1 to reap it.
func (r *run) watchReap(ctx context.Context, f *Findings) error {
	ok, err := r.poll(ctx, r.cfg.Settle+r.cfg.ReapWait, func() bool { return !alive(r.strayfd) })
	if err != nil || !ok {
		return err // still running: PID 1 ended or the child hangs; not tested
	}
	exited := time.Now()
	f.Reap.Tested = true
	ok, err = r.poll(ctx, r.cfg.ReapWait, func() bool { return reaped(r.strayfd) })
	if err != nil {
		return err
	}
	f.Reap.Reaped, f.Reap.After = ok, time.Since(exited)
	return nil
}

// zombies counts PID 1's children that are zombies.
func (r *run) zombies() int {
	kids, err := children(r.pid1)
	if err != nil {
		return 0
	}
	n := 0
	for _, k := range kids {
		if st, err := readStatus(k); err == nil && st.State == 'Z' {
			n++
		}
	}
	return n
}

// stopMachine stops nspawn if it still runs: SIGTERM, which makes it
// SIGKILL PID 1 (--kill-signal) and clean up; after 3s SIGKILL to PID 1
// and nspawn. It then takes its mounts down (they would go with the
// thread's namespace anyway).
func (r *run) stopMachine() error {
	defer func() {
		for i := len(r.mounts) - 1; i >= 0; i-- {
			_ = unix.Unmount(r.mounts[i], unix.MNT_DETACH)
		}
	}()
	if r.cmd == nil || r.cmd.Process == nil {
		return nil
	}
	if r.hasExited() {
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		return nil
	case <-time.After(3 * time.Second):
	}
	if r.pid1fd >= 0 {
		_ = unix.PidfdSendSignal(r.pid1fd, unix.SIGKILL, nil, 0)
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.exited:
		return nil
	case <-time.After(2 * time.Second):
		return fmt.Errorf("systemd-nspawn (pid %d) did not exit after SIGKILL", r.nspawn)
	}
}

// tail keeps the last bytes written to it.
type tail struct {
	mu sync.Mutex
	b  []byte
}

// tailSize is how much console output a probe keeps.
const tailSize = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - tailSize; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// excerpt is the last lines of the output, for an error.
func (t *tail) excerpt() string {
	s := strings.TrimSpace(t.String())
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return "; its output ends:\n  " + strings.Join(lines, "\n  ")
}
