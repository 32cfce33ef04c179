package forward

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestPipePoolCopy: data arrives whole and in order with pipes and, when
// the pool is used up, through the buffer; the pool gets its pipes back.
func TestPipePoolCopy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noPipes bool
	}{{"spliced", false}, {"pool used up", true}} {
		t.Run(tc.name, func(t *testing.T) {
			pp := newPipePool()
			defer pp.close()
			if tc.noPipes {
				pp.made = poolPipes
			}
			client, inA := tcpPair(t)                               // client → forwarder
			outB, app := tcpPair(t)                                 // forwarder → app
			data := bytes.Repeat([]byte("forwarded bytes "), 1<<17) // 2 MiB
			go func() {
				client.Write(data)
				client.CloseWrite()
			}()
			errc := make(chan error, 1)
			go func() {
				err := pp.copy(outB, inA)
				outB.CloseWrite()
				errc <- err
			}()
			got, err := io.ReadAll(app)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("copy: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("the app got %d bytes, want the %d sent", len(got), len(data))
			}
			pp.mu.Lock()
			free, made := len(pp.free), pp.made
			pp.mu.Unlock()
			if !tc.noPipes && (made != 1 || free != 1) {
				t.Errorf("the pool made %d pipes and has %d free, want 1 and 1", made, free)
			}
			if tc.noPipes && free != 0 {
				t.Errorf("a used-up pool has %d free pipes", free)
			}
		})
	}
}
