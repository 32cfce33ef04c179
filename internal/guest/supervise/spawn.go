package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// Run reaps every child with wait4(-1), so a process that man8s-init starts
// beside the app (a health check) cannot be waited for with exec.Cmd.Wait:
// Run would take its status first. Spawn starts such a process under the
// children lock, and reap hands the status of a registered PID to its
// waiter. When no Run is active, Spawn waits for its child itself.
var children = struct {
	sync.Mutex
	active  int                             // Runs in their loop
	waiting map[int]chan syscall.WaitStatus // registered PIDs
}{waiting: map[int]chan syscall.WaitStatus{}}

// deliver hands ws to the waiter of pid, if any.
func deliver(pid int, ws syscall.WaitStatus) bool {
	children.Lock()
	defer children.Unlock()
	ch, ok := children.waiting[pid]
	if ok {
		delete(children.waiting, pid)
		ch <- ws
	}
	return ok
}

func runActive(on bool) {
	children.Lock()
	defer children.Unlock()
	if on {
		children.active++
		return
	}
	children.active--
	if children.active > 0 {
		return
	}
	// Nobody reaps any more: every waiter waits for its own child.
	for pid, ch := range children.waiting {
		delete(children.waiting, pid)
		go func() { ch <- wait(pid) }()
	}
}

func wait(pid int) syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			return ws
		}
	}
}

// SpawnOptions say how Spawn runs a command.
type SpawnOptions struct {
	Env        []string
	Credential *syscall.Credential
	// Timeout bounds the command; at the end its process group is
	// SIGKILLed. Zero means 30 s.
	Timeout time.Duration
	// MaxOutput is how much of the combined stdout and stderr is kept
	// (default 4 KiB); the rest is read and dropped.
	MaxOutput int
}

// Result is what a spawned command did.
type Result struct {
	// Status is the exit status (128+signal when killed).
	Status int
	// Output is the start of its combined output.
	Output string
	// TimedOut is true when Timeout killed it.
	TimedOut bool
}

// Spawn runs argv (Argv[0] looked up in Env's PATH) in its own process
// group with stdin on /dev/null, and returns its status and output. It is
// safe beside Run: see children.
func Spawn(ctx context.Context, argv []string, opts SpawnOptions) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("spawn: empty command")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = 4096
	}
	path, err := LookPath(argv[0], opts.Env)
	if err != nil {
		return Result{Status: ExecStatus(err)}, fmt.Errorf("%q: %w", argv[0], err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return Result{}, err
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	attr := &syscall.ProcAttr{
		Env:   opts.Env,
		Files: []uintptr{null.Fd(), w.Fd(), w.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: opts.Credential},
	}
	ch := make(chan syscall.WaitStatus, 1)
	children.Lock()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err == nil {
		if children.active > 0 {
			children.waiting[pid] = ch
		} else {
			go func() { ch <- wait(pid) }()
		}
	}
	children.Unlock()
	w.Close()
	if err != nil {
		return Result{Status: ExecStatus(err)}, fmt.Errorf("exec %q: %w", path, err)
	}

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var res Result
	out := make(chan string, 1)
	go func() {
		buf := make([]byte, opts.MaxOutput)
		n, _ := io.ReadFull(r, buf)
		io.Copy(io.Discard, r) // until every writer has closed
		out <- string(buf[:n])
	}()
	var ws syscall.WaitStatus
	select {
	case ws = <-ch:
	case <-ctx.Done():
		res.TimedOut = true
		syscall.Kill(-pid, syscall.SIGKILL)
		ws = <-ch
	}
	// The command is gone; what it left holding the pipe goes too.
	syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case res.Output = <-out:
	case <-time.After(100 * time.Millisecond):
		r.SetReadDeadline(time.Unix(1, 0))
		res.Output = <-out
	}
	res.Status = waitStatus(ws)
	return res, nil
}
