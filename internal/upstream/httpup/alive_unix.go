//go:build unix

package httpup

import (
	"net"
	"syscall"
)

// peeker tells whether an idle connection may carry another request: the
// server has not closed it (a read would see EOF) and sent nothing unasked
// (which would be read as the next answer). One non-blocking peek at the
// socket, no goroutine; a connection that cannot be peeked at counts as
// alive (its next exchange tells). The raw connection and the callback
// are made once per connection.
type peeker struct {
	rc  syscall.RawConn
	f   func(fd uintptr) bool
	ok  bool
	buf [1]byte
}

func (p *peeker) init(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	p.rc = rc
	p.f = func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing to read, open and quiet; EINTR: no news.
		// Anything else is EOF (n == 0, no error), unasked bytes or an
		// error.
		p.ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR
		return true
	}
}

func (p *peeker) alive() bool {
	if p.rc == nil {
		return true
	}
	p.ok = false
	if err := p.rc.Read(p.f); err != nil {
		return false
	}
	return p.ok
}
