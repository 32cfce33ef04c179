package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal a test types into as a person would.
type terminal struct {
	master, slave *os.File

	mu  sync.Mutex
	out strings.Builder // everything the program wrote
	pos int             // how much of out expect has consumed
}

// openTerminal opens a pty pair; the slave is for the program's stdio.
func openTerminal(t *testing.T) *terminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{master: master, slave: slave}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { slave.Close(); master.Close() })
	return term
}

// expect waits until the program has written want after what earlier
// expects consumed.
func (term *terminal) expect(t *testing.T, want string) {
	t.Helper()
	seen := func() bool {
		term.mu.Lock()
		defer term.mu.Unlock()
		i := strings.Index(term.out.String()[term.pos:], want)
		if i >= 0 {
			term.pos += i + len(want)
		}
		return i >= 0
	}
	if !poll(60*time.Second, nil, seen) {
		t.Fatalf("the program never wrote %q; it wrote:\n%s", want, term.output())
	}
}

// start runs cmd as a session leader with the terminal as its controlling
// terminal and its standard streams, and returns what cmd.Wait returns. A
// terminal serves one command.
func (term *terminal) start(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term.slave, term.slave, term.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term.slave.Close() // the child has it; the reader sees the end when it exits
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done
}

// resize sets the terminal's window size, as a terminal emulator does
// (progress bars need a width).
func (term *terminal) resize(t *testing.T, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(term.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
}

// typeLine types line and Enter.
func (term *terminal) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := term.master.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}
