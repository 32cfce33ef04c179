package forward

import (
	"errors"
	"io"
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
// chunk is in flight, and copies through a small buffer of its own when
// none is free (which also keeps two connections from waiting on each
// other's pipes).
const (
	pipeSize  = 256 << 10 // 64 pages
	poolPipes = 64        // 16 MiB of pipes: a quarter of the soft limit
	copyBuf   = 16 << 10  // a chunk's buffer when no pipe is free
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
func (pp *pipePool) copy(dst, src *net.TCPConn) error {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	for {
		// Wait for data before taking a pipe: an idle connection holds none.
		eof, err := readable(srcRC)
		if err != nil || eof {
			return err
		}
		p, ok := pp.get()
		if !ok {
			if eof, err := pp.copyChunk(dst, src); err != nil || eof {
				return err
			}
			continue
		}
		// Keep the pipe while src has more at once (a burst); give it
		// back when src would block.
		wait := true
		for {
			eof, more, err := spliceChunk(dstRC, srcRC, p, wait)
			if err != nil {
				pp.drop(p) // it may hold what could not be written
				return err
			}
			if eof {
				pp.put(p)
				return nil
			}
			if !more {
				break
			}
			wait = false
		}
		pp.put(p)
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

// spliceChunk splices what src holds (up to a pipe's size) into p and on
// into dst; eof when src had ended. With wait false it does not wait for
// src: more is false when src had nothing.
func spliceChunk(dst, src syscall.RawConn, p kpipe, wait bool) (eof, more bool, err error) {
	var n int64
	var serr error
	err = src.Read(func(fd uintptr) bool {
		for {
			n, serr = unix.Splice(int(fd), nil, p.w, nil, pipeSize, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			switch serr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return !wait
			}
			return true
		}
	})
	if serr == unix.EAGAIN { // only without wait
		return false, false, err
	}
	if err := errors.Join(err, wrap("splice", serr)); err != nil {
		return false, false, err
	}
	if n == 0 {
		return true, false, nil
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
	return false, true, errors.Join(err, wrap("splice", serr))
}

// copyChunk copies one read's worth through a pooled buffer.
func (pp *pipePool) copyChunk(dst, src *net.TCPConn) (eof bool, err error) {
	bp := pp.bufs.Get().(*[]byte)
	defer pp.bufs.Put(bp)
	n, err := src.Read(*bp)
	if n > 0 {
		if _, werr := dst.Write((*bp)[:n]); werr != nil {
			return false, werr
		}
	}
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}
