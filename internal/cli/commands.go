package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/man8s/mbctl/internal/host/machine"
)

// commands runs the host programs mbctl delegates to.
type commands interface {
	// Host describes this host's init (systemd or not).
	Host() machine.HostInit
	// Run runs argv in the foreground with the terminal and returns its
	// exit status. SIGINT and SIGTERM that mbctl receives meanwhile are
	// passed on to it as SIGTERM (for nspawn: an orderly stop).
	Run(ctx context.Context, argv []string) (int, error)
	// Exec replaces mbctl with argv (environment env; nil keeps mbctl's).
	Exec(argv, env []string) error
}

func (f *Factory) commands() commands {
	if f.Commands == nil {
		f.Commands = systemCommands{}
	}
	return f.Commands
}

type systemCommands struct{}

func (systemCommands) Host() machine.HostInit { return machine.DetectHostInit("/") }

func (systemCommands) Run(ctx context.Context, argv []string) (int, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 0, fmt.Errorf("%s: %w", argv[0], err)
	}
	// mbctl's own SIGINT/SIGTERM handler cancels ctx: keep catching them
	// here and hand them on, so the child stops its own way and mbctl
	// reports its status.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	cmd := exec.Command(path, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case <-sigs:
			_ = cmd.Process.Signal(syscall.SIGTERM)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			if err != nil {
				return 0, fmt.Errorf("running %s: %w", argv[0], err)
			}
			return 0, nil
		}
	}
}

func (systemCommands) Exec(argv, env []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	if env == nil {
		env = os.Environ()
	}
	signal.Reset() // the new program handles its own signals
	return fmt.Errorf("running %s: %w", argv[0], syscall.Exec(path, argv, env))
}
