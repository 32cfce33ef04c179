// Package notify sends sd_notify(3) messages (READY=1, STATUS=...) from
// man8s-init to systemd-nspawn, which forwards them to systemd.
//
// systemd-nspawn (nspawn_dispatch_notify_fd) accepts a message on the
// container's notify socket (/run/host/notify, $NOTIFY_SOCKET) only when
// the sender's credentials name the container's PID 1. In supervise mode
// that is nspawn's stub init and man8s-init is PID 2, so a plain
// sd_notify from man8s-init would be dropped. The kernel lets a sender
// put another process's PID into SCM_CREDENTIALS when it has CAP_SYS_ADMIN
// in the user namespace that owns its PID namespace (net/core/scm.c,
// scm_check_creds); man8s-init is root in the machine's user namespace,
// which owns the machine's PID namespace, so it names PID 1 and nspawn
// takes the message. Where the kernel refuses (EPERM: no such
// capability), the message goes out with man8s-init's own PID, and the
// failure is reported once.
package notify

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// EnvSocket is the variable naming the notify socket.
const EnvSocket = "NOTIFY_SOCKET"

// Notifier sends to one notify socket. The zero value and nil send
// nothing (no $NOTIFY_SOCKET: not started by systemd or nspawn).
type Notifier struct {
	addr string
	// AsPID is the PID named in the credentials (default: 1 when the
	// process is a machine's PID 1 or 2, else its own).
	AsPID int

	mu     sync.Mutex
	fd     int
	open   bool
	ownPID bool // the kernel refused AsPID: send as ourselves
}

// New returns a Notifier for the socket at addr (a path, or "@name" for
// the abstract namespace); nil when addr is empty.
func New(addr string) *Notifier {
	if addr == "" {
		return nil
	}
	n := &Notifier{addr: addr, AsPID: os.Getpid()}
	if n.AsPID <= 2 {
		n.AsPID = 1
	}
	return n
}

// FromEnv returns the Notifier for $NOTIFY_SOCKET (nil when unset).
func FromEnv() *Notifier { return New(os.Getenv(EnvSocket)) }

// Addr is the socket's address ("" for nil).
func (n *Notifier) Addr() string {
	if n == nil {
		return ""
	}
	return n.addr
}

// Send sends the assignments (e.g. "READY=1", "STATUS=healthy") in one
// datagram. A value holding a newline is cut there. It reports whether the
// kernel let the message name AsPID (false: it went out as our own PID,
// which nspawn ignores unless we are its PID 1).
func (n *Notifier) Send(states ...string) (named bool, err error) {
	if n == nil || len(states) == 0 {
		return true, nil
	}
	var b strings.Builder
	for _, s := range states {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.open {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("notify socket: %w", err)
		}
		n.fd, n.open = fd, true
	}
	to := &unix.SockaddrUnix{Name: n.addr}
	msg := []byte(b.String())
	if !n.ownPID {
		err := unix.Sendmsg(n.fd, msg, n.creds(n.AsPID), to, unix.MSG_NOSIGNAL)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, syscall.EPERM) {
			return false, fmt.Errorf("sending to %s: %w", n.addr, err)
		}
		n.ownPID = true
	}
	if err := unix.Sendmsg(n.fd, msg, n.creds(os.Getpid()), to, unix.MSG_NOSIGNAL); err != nil {
		return false, fmt.Errorf("sending to %s: %w", n.addr, err)
	}
	return n.AsPID == os.Getpid(), nil
}

func (n *Notifier) creds(pid int) []byte {
	return unix.UnixCredentials(&unix.Ucred{Pid: int32(pid), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
}

// Close closes the socket.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.open {
		return nil
	}
	n.open = false
	return unix.Close(n.fd)
}
