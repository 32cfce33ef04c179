package notify

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/ci"
)

func TestSend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, _ := conn.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })

	n := New(path)
	if n.AsPID != os.Getpid() {
		t.Fatalf("outside a machine AsPID = %d, want our own %d", n.AsPID, os.Getpid())
	}
	defer n.Close()
	named, err := n.Send("READY=1", "STATUS=two\nlines")
	if err != nil || !named {
		t.Fatalf("Send = %v, %v", named, err)
	}
	buf, oob := make([]byte, 512), make([]byte, 512)
	nb, noob, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:nb]); got != "READY=1\nSTATUS=two\n" {
		t.Errorf("message %q", got)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:noob])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v %v", msgs, err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil || int(cred.Pid) != os.Getpid() {
		t.Errorf("credentials %+v %v", cred, err)
	}
}

func TestNilSendsNothing(t *testing.T) {
	var n *Notifier
	if named, err := n.Send("READY=1"); err != nil || !named {
		t.Errorf("nil Send = %v %v", named, err)
	}
	if New("") != nil {
		t.Error("New(\"\") is not nil")
	}
}

// As root on the host (CAP_SYS_ADMIN over our PID namespace) the kernel
// lets a message name another PID, as man8s-init names PID 1 in a machine.
func TestSendNamesAnotherPID(t *testing.T) {
	ci.RequireRoot(t, "naming another PID needs CAP_SYS_ADMIN")
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, _ := conn.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	n := New(path)
	n.AsPID = os.Getppid()
	if named, err := n.Send("READY=1"); err != nil || !named {
		t.Fatalf("Send = %v %v", named, err)
	}
	buf, oob := make([]byte, 512), make([]byte, 512)
	_, noob, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:noob])
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil || int(cred.Pid) != os.Getppid() {
		t.Errorf("credentials %+v %v, want PID %d", cred, err, os.Getppid())
	}
}
