package forward

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Pipes for splicing. Go's io.Copy between two *net.TCPConn splices too,
// but holds two 1 MiB pipes for each connection's whole life. The kernel
// counts a pipe's size against its user (fs.pipe-user-pages-soft, 64 MiB)
// whatever it holds, and a machine's root is an unprivileged host user:
// past 32 connections, idle or not, new pipes would shrink to a page or
// two. So the forwarder takes a pipe from a small pool only while a
// burst is in flight, and copies through a small buffer of its own what
// comes in small pieces or when no pipe is free (which also keeps two
// connections from waiting on each other's pipes).
const (
	pipeSize  = 256 << 10 // 64 pages
	poolPipes = 64        // 16 MiB of pipes: a quarter of the soft limit
	copyBuf   = 16 << 10  // a chunk read before splicing, or when no pipe is free
)

type kpipe struct{ r, w int }

// pipePool holds the pipes of one Forwarder.
type pipePool struct {
	mu   sync.Mutex
	free []kpipe
	made int
	bufs sync.Pool
}

func newPipePool() *pipePool {
	return &pipePool{bufs: sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}}
}

// get returns an empty pipe, or false when all are in use.
func (pp *pipePool) get() (kpipe, bool) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		return p, true
	}
	if pp.made >= poolPipes {
		return kpipe{}, false
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return kpipe{}, false
	}
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize) // smaller works too
	pp.made++
	return kpipe{r: fds[0], w: fds[1]}, true
}

// put gives back an empty pipe.
func (pp *pipePool) put(p kpipe) {
	pp.mu.Lock()
	pp.free = append(pp.free, p)
	pp.mu.Unlock()
}

// drop closes a pipe that may hold data.
func (pp *pipePool) drop(p kpipe) {
	unix.Close(p.r)
	unix.Close(p.w)
	pp.mu.Lock()
	pp.made--
	pp.mu.Unlock()
}

// close closes the free pipes (those in use are dropped by their users).
func (pp *pipePool) close() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, p := range pp.free {
		unix.Close(p.r)
		unix.Close(p.w)
	}
	pp.made -= len(pp.free)
	pp.free = nil
}

// copy moves src to dst until src's EOF (nil) or an error.
//
// What comes in small pieces (requests, replies) is read into a small
// buffer, taken only once src is readable, and written on: one read and
// one write, fewer system calls than through a pipe. A read that fills
// the buffer starts a burst: the rest is spliced through a pipe from the
// pool while src has more at once, and while the bursts stay large, the
// next turn waits for src and splices again without the copy. An idle
// connection holds neither a buffer nor a pipe. HAProxy's splice-auto
// chooses alike.
func (pp *pipePool) copy(dst, src *net.TCPConn) error {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	bulk := false
	for {
		if bulk {
			if eof, err := readable(srcRC); err != nil || eof {
				return err
			}
		} else {
			full, eof, err := pp.copyChunk(dst, srcRC)
			if err != nil || eof {
				return err
			}
			if !full {
				continue
			}
		}
		p, ok := pp.get()
		if !ok {
			bulk = false // the next chunk goes through a buffer
			continue
		}
		var moved int64
		for {
			n, eof, err := spliceChunk(dstRC, srcRC, p)
			moved += n
			if err != nil {
				pp.drop(p) // it may hold what could not be written
				return err
			}
			if eof {
				pp.put(p)
				return nil
			}
			if n == 0 {
				break
			}
		}
		pp.put(p)
		bulk = moved >= copyBuf
	}
}

// readable waits until src has data or its EOF (true) or an error.
func readable(src syscall.RawConn) (eof bool, err error) {
	var b [1]byte
	var serr error
	err = src.Read(func(fd uintptr) bool {
		for {
			n, _, e := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false
			case e != nil:
				serr = e
			case n == 0:
				eof = true
			}
			return true
		}
	})
	return eof, errors.Join(err, wrap("recv", serr))
}

// copyChunk waits until src is readable, reads what it holds into a
// pooled buffer and writes that to dst. full says the buffer was filled;
// eof that src has ended.
func (pp *pipePool) copyChunk(dst *net.TCPConn, src syscall.RawConn) (full, eof bool, err error) {
	var bp *[]byte
	var n int
	var serr error
	err = src.Read(func(fd uintptr) bool {
		if bp == nil {
			bp = pp.bufs.Get().(*[]byte)
		}
		for {
			n, serr = unix.Read(int(fd), *bp)
			switch serr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				pp.bufs.Put(bp) // wait for data without a buffer
				bp = nil
				return false
			}
			return true
		}
	})
	if bp != nil {
		defer pp.bufs.Put(bp)
	}
	if err := errors.Join(err, wrap("read", serr)); err != nil {
		return false, false, err
	}
	if n == 0 {
		return false, true, nil
	}
	if _, err := dst.Write((*bp)[:n]); err != nil {
		return false, false, err
	}
	return n == len(*bp), false, nil
}

// spliceChunk splices what src holds now (up to a pipe's size) into p and
// on into dst, without waiting for src: n is 0 when src had nothing, eof
// when src had ended.
func spliceChunk(dst, src syscall.RawConn, p kpipe) (n int64, eof bool, err error) {
	var serr error
	err = src.Read(func(fd uintptr) bool {
		for {
			n, serr = unix.Splice(int(fd), nil, p.w, nil, pipeSize, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			if serr != unix.EINTR {
				return true
			}
		}
	})
	if serr == unix.EAGAIN {
		return 0, false, err
	}
	if err := errors.Join(err, wrap("splice", serr)); err != nil {
		return 0, false, err
	}
	if n == 0 {
		return 0, true, nil
	}
	left := n
	err = dst.Write(func(fd uintptr) bool {
		for left > 0 {
			m, e := unix.Splice(p.r, nil, int(fd), nil, int(left), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			switch e {
			case nil:
				left -= m
				continue
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			serr = e
			return true
		}
		return true
	})
	return n, false, errors.Join(err, wrap("splice", serr))
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}
