package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	helperModeEnv = "SUPERVISE_TEST_HELPER"
	helperDirEnv  = "SUPERVISE_TEST_DIR"
	deadline      = 10 * time.Second
)

// TestMain lets the test binary act as the supervised application (and its
// descendants) when helperModeEnv is set.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperModeEnv); mode != "" {
		os.Exit(helper(mode, os.Getenv(helperDirEnv)))
	}
	os.Exit(m.Run())
}

// helper runs one helper behaviour and returns its exit code.
func helper(mode, dir string) int {
	write := func(name, content string) {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			os.Exit(90)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			os.Exit(91)
		}
	}
	spawn := func(mode string) *os.Process {
		self, err := os.Executable()
		if err != nil {
			os.Exit(92)
		}
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, helperModeEnv+"=")
		})
		p, err := os.StartProcess(self, []string{self}, &os.ProcAttr{
			Env:   append(env, helperModeEnv+"="+mode),
			Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		})
		if err != nil {
			os.Exit(93)
		}
		return p
	}
	switch mode {
	case "leaf":
		return 0
	case "blocked-leaf":
		signal.Ignore(syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
		sleepForever()
	case "middle":
		leaf := spawn("leaf")
		write("leaf", strconv.Itoa(leaf.Pid))
		return 0 // orphans the leaf
	}

	write("pid", strconv.Itoa(os.Getpid()))
	switch mode {
	case "exit":
		code, _ := strconv.Atoi(os.Getenv("SUPERVISE_TEST_CODE"))
		return code
	case "block":
		sleepForever()
	case "ignore":
		signal.Ignore(syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
		leaf := spawn("blocked-leaf") // same process group as the app
		write("leaf", strconv.Itoa(leaf.Pid))
		write("ready", "")
		sleepForever()
	case "fork":
		if _, err := spawn("middle").Wait(); err != nil {
			return 94
		}
		fallthrough
	case "record":
		ch := make(chan os.Signal, 16)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
		write("ready", "")
		f, err := os.OpenFile(filepath.Join(dir, "signals"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return 95
		}
		for s := range ch {
			fmt.Fprintln(f, unix.SignalName(s.(syscall.Signal)))
			if s == syscall.SIGUSR2 {
				return 0
			}
		}
	}
	return 99
}

// sleepForever blocks without tripping the runtime's deadlock detector.
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

type result struct {
	status int
	err    error
}

// app is one supervised helper application under test.
type app struct {
	t      *testing.T
	dir    string
	sigs   chan os.Signal
	result chan result
	cancel context.CancelFunc
}

// startApp runs Run on the test binary in the given helper mode. Zero fields of opts
// get test defaults.
func startApp(t *testing.T, mode string, opts Options, env ...string) *app {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := &app{t: t, dir: t.TempDir(), sigs: make(chan os.Signal), result: make(chan result, 1)}
	if opts.Argv == nil {
		opts.Argv = []string{self}
	}
	if opts.Env == nil {
		opts.Env = append(os.Environ(), helperModeEnv+"="+mode, helperDirEnv+"="+a.dir)
		opts.Env = append(opts.Env, env...)
		// Race-enabled helpers otherwise sleep 1s at exit.
		opts.Env = append(opts.Env, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Signals = a.sigs
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() {
		status, err := Run(ctx, opts)
		a.result <- result{status, err}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case r := <-a.result: // Run already finished, or finishes now
			a.result <- r
			return
		default:
		}
		if b, err := os.ReadFile(filepath.Join(a.dir, "pid")); err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case r := <-a.result:
			a.result <- r
		case <-time.After(deadline):
			t.Error("Run did not return after the app was killed")
		}
	})
	return a
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// wait returns Run's result, failing the test after the deadline.
func (a *app) wait() result {
	a.t.Helper()
	select {
	case r := <-a.result:
		a.result <- r
		return r
	case <-time.After(deadline):
		a.t.Fatal("Run did not return before the deadline")
		return result{}
	}
}

// send delivers a fake signal to the supervisor.
func (a *app) send(sig os.Signal) {
	a.t.Helper()
	select {
	case a.sigs <- sig:
	case r := <-a.result:
		a.result <- r
		a.t.Fatalf("Run returned (%d, %v) before %v could be sent", r.status, r.err, sig)
	case <-time.After(deadline):
		a.t.Fatalf("supervisor did not take %v", sig)
	}
}

// file waits until the app has written name and returns its content.
func (a *app) file(name string) string {
	a.t.Helper()
	var content string
	waitFor(a.t, "file "+name, func() bool {
		b, err := os.ReadFile(filepath.Join(a.dir, name))
		content = string(b)
		return err == nil
	})
	return content
}

// signals returns the signal names the app has recorded.
func (a *app) signals() []string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "signals"))
	return strings.Fields(string(b))
}

// waitFor polls cond until it holds, failing the test after the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// zombieChildren lists the zombie children of the test process.
func zombieChildren(t *testing.T) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var zombies []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == os.Getpid() && fields[0] == "Z" {
			pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
			zombies = append(zombies, pid)
		}
	}
	return zombies
}

func TestExitStatus(t *testing.T) {
	for _, code := range []int{0, 3, 255} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			a := startApp(t, "exit", Options{}, "SUPERVISE_TEST_CODE="+strconv.Itoa(code))
			if r := a.wait(); r.status != code || r.err != nil {
				t.Errorf("Run = (%d, %v), want (%d, nil)", r.status, r.err, code)
			}
		})
	}
}

func TestKilledFromOutside(t *testing.T) {
	a := startApp(t, "block", Options{})
	pid, err := strconv.Atoi(a.file("pid"))
	if err != nil {
		t.Fatal(err)
	}
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("app's process group = %d, %v; want its own (%d)", pgid, err, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := a.wait(); r.status != 137 || r.err != nil {
		t.Errorf("Run = (%d, %v), want (137, nil)", r.status, r.err)
	}
}

func TestExecFailure(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		argv []string
		want int
	}{
		{"missing absolute", []string{filepath.Join(dir, "missing")}, StatusNotFound},
		{"missing in PATH", []string{"no-such-program"}, StatusNotFound},
		{"missing directory", []string{filepath.Join(dir, "nodir", "prog")}, StatusNotFound},
		{"not executable", []string{plain}, StatusCannotExecute},
		{"not executable in PATH", []string{"plain"}, StatusCannotExecute},
		{"directory", []string{dir}, StatusCannotExecute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, err := Run(context.Background(), Options{Argv: tt.argv, Env: []string{"PATH=" + dir}})
			if status != tt.want || err == nil {
				t.Errorf("Run(%q) = (%d, %v), want (%d, error)", tt.argv, status, err, tt.want)
			}
		})
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name       string
		stopSignal syscall.Signal
		first      []os.Signal // sent, then received by the app, before send
		send       []os.Signal // before the final SIGUSR2 that ends the app
		want       []string    // signals the app must see, each once, SIGUSR2 last
	}{
		{"default stop signal", 0, nil, []os.Signal{syscall.SIGTERM}, []string{"SIGTERM", "SIGUSR2"}},
		{"stop signal once", syscall.SIGQUIT, nil, []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, []string{"SIGQUIT", "SIGUSR2"}},
		{"stub init poweroff", syscall.SIGQUIT, nil, []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGHUP}, []string{"SIGQUIT", "SIGUSR2"}},
		// Go delivers signals pending together in number order: the stub
		// init's SIGTERM+SIGHUP may arrive as SIGHUP, SIGTERM.
		{"stub init poweroff, reordered", syscall.SIGQUIT, nil, []os.Signal{syscall.SIGHUP, syscall.SIGTERM}, []string{"SIGQUIT", "SIGUSR2"}},
		{"SIGHUP well before stop", syscall.SIGQUIT, []os.Signal{syscall.SIGHUP}, []os.Signal{syscall.SIGTERM, syscall.SIGHUP}, []string{"SIGHUP", "SIGQUIT", "SIGUSR2"}},
		{"forwarded", syscall.SIGQUIT, nil, []os.Signal{syscall.SIGUSR1, syscall.SIGQUIT, syscall.SIGCHLD, syscall.SIGPIPE}, []string{"SIGUSR1", "SIGQUIT", "SIGUSR2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startApp(t, "record", Options{StopSignal: tt.stopSignal})
			a.file("ready")
			for _, sig := range tt.first {
				a.send(sig)
			}
			if len(tt.first) > 0 {
				waitFor(t, "the first signals", func() bool { return len(a.signals()) >= len(tt.first) })
			}
			for _, sig := range tt.send {
				a.send(sig)
			}
			// The unbuffered channel means the supervisor has handled every signal
			// above; wait until the app has recorded the expected ones, then end it.
			// A wrongly forwarded SIGHUP would have been sent before SIGUSR2 and, having
			// the lower number, be delivered to the app first.
			waitFor(t, "signals "+strings.Join(tt.want, ","), func() bool {
				return len(a.signals()) >= len(tt.want)-1
			})
			a.send(syscall.SIGUSR2)
			if r := a.wait(); r.status != 0 || r.err != nil {
				t.Fatalf("Run = (%d, %v), want (0, nil)", r.status, r.err)
			}
			got := a.signals()
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("app saw %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStopByContext(t *testing.T) {
	a := startApp(t, "record", Options{StopSignal: syscall.SIGUSR2})
	a.file("ready")
	a.cancel()
	if r := a.wait(); r.status != 0 || r.err != nil {
		t.Fatalf("Run = (%d, %v), want (0, nil)", r.status, r.err)
	}
	if got, want := a.signals(), []string{"SIGUSR2"}; !slices.Equal(got, want) {
		t.Errorf("app saw %q, want %q", got, want)
	}
}

// OnStop hears of the stop once, with the time the SIGKILL is due, and
// not at all when the app exits by itself.
func TestOnStopReportsTheKillTime(t *testing.T) {
	const timeout = 7 * time.Second
	var calls []time.Time // written on Run's goroutine, read after it returned
	onStop := func(killAt time.Time) { calls = append(calls, killAt) }

	a := startApp(t, "record", Options{StopTimeout: timeout, OnStop: onStop})
	a.file("ready")
	before := time.Now()
	a.send(syscall.SIGTERM)
	a.send(syscall.SIGTERM) // a second stop request starts no second stop
	after := time.Now()
	waitFor(t, "the stop signal", func() bool { return len(a.signals()) >= 1 })
	a.send(syscall.SIGUSR2)
	if r := a.wait(); r.status != 0 || r.err != nil {
		t.Fatalf("Run = (%d, %v), want (0, nil)", r.status, r.err)
	}
	if len(calls) != 1 {
		t.Fatalf("OnStop called %d times, want once", len(calls))
	}
	if killAt := calls[0]; killAt.Before(before.Add(timeout)) || killAt.After(after.Add(timeout)) {
		t.Errorf("OnStop got kill time %s after the stop request, want %s", killAt.Sub(before), timeout)
	}

	calls = nil
	b := startApp(t, "exit", Options{OnStop: onStop})
	if r := b.wait(); r.status != 0 || r.err != nil {
		t.Fatalf("Run = (%d, %v), want (0, nil)", r.status, r.err)
	}
	if len(calls) != 0 {
		t.Errorf("OnStop called %d times for an app that exited by itself", len(calls))
	}
}

func TestClosedSignalSource(t *testing.T) {
	a := startApp(t, "block", Options{})
	close(a.sigs)
	pid, err := strconv.Atoi(a.file("pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := a.wait(); r.status != 137 || r.err != nil {
		t.Errorf("Run = (%d, %v), want (137, nil)", r.status, r.err)
	}
}

func TestStopTimeoutKillsProcessGroup(t *testing.T) {
	const timeout = 300 * time.Millisecond
	a := startApp(t, "ignore", Options{StopSignal: syscall.SIGQUIT, StopTimeout: timeout})
	a.file("ready")
	leaf, err := strconv.Atoi(a.file("leaf"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a.send(syscall.SIGTERM)
	a.send(syscall.SIGHUP)
	r := a.wait()
	if elapsed := time.Since(start); elapsed < timeout {
		t.Errorf("Run returned after %v, before the stop timeout %v", elapsed, timeout)
	}
	if r.status != 128+int(syscall.SIGKILL) || r.err != nil {
		t.Errorf("Run = (%d, %v), want (137, nil)", r.status, r.err)
	}
	// The app's own child, in its process group, ignores the stop signals and would
	// live forever unless the group was killed. Orphaned, it became ours (we are a
	// subreaper): either Run reaped it already, or we reap it here.
	done := make(chan error, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(leaf, &ws, 0, nil)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.ECHILD): // reaped by Run
				done <- nil
			case err != nil:
				done <- err
			case !ws.Signaled() || ws.Signal() != syscall.SIGKILL:
				done <- fmt.Errorf("ended with wait status %#x, want SIGKILL", uint32(ws))
			default:
				done <- nil
			}
			return
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("app's child: %v", err)
		}
	case <-time.After(deadline):
		_ = syscall.Kill(leaf, syscall.SIGKILL)
		t.Fatal("app's child survived the process group kill")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", leaf)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("app's child %d still exists: %v", leaf, err)
	}
}

func TestReapsOrphans(t *testing.T) {
	a := startApp(t, "fork", Options{})
	a.file("ready")
	leaf, err := strconv.Atoi(a.file("leaf"))
	if err != nil {
		t.Fatal(err)
	}
	// The orphaned grandchild is reparented to us (the subreaper) and must be reaped
	// while the app still runs: then it vanishes from /proc instead of staying a zombie.
	waitFor(t, fmt.Sprintf("orphan %d to be reaped", leaf), func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", leaf))
		return errors.Is(err, os.ErrNotExist)
	})
	a.send(syscall.SIGUSR2)
	if r := a.wait(); r.status != 0 || r.err != nil {
		t.Fatalf("Run = (%d, %v), want (0, nil)", r.status, r.err)
	}
	if z := zombieChildren(t); len(z) > 0 {
		t.Errorf("zombie children left: %v", z)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "exe")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file    string
		env     []string
		want    string
		wantErr error
	}{
		{file: "exe", env: []string{"PATH=/nonexistent:" + dir}, want: exe},
		{file: "exe", env: []string{"PATH=/a", "PATH=" + dir}, want: exe}, // last PATH wins
		{file: "exe", env: nil, wantErr: syscall.ENOENT},
		{file: "./rel", env: nil, want: "./rel"},
		{file: "sh", env: nil, want: "/usr/bin/sh"},
	}
	for _, tt := range tests {
		got, err := LookPath(tt.file, tt.env)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("LookPath(%q, %q) error = %v, want %v", tt.file, tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("LookPath(%q, %q) = %q, %v; want %q", tt.file, tt.env, got, err, tt.want)
		}
	}
}
