// Package procs holds what the bench programs that run the mcpgate binary
// as a process share: a free address to give it, waiting for it to
// listen, and failing the run on an error.
package procs

import (
	"log"
	"net"
	"time"
)

// FreeAddr is a loopback address nothing listens on (at the moment).
func FreeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Must(err)
	defer ln.Close()
	return ln.Addr().String()
}

// WaitListening returns once something accepts connections on addr, and
// ends the run when nothing does within 30 s.
func WaitListening(addr string) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return
		}
	}
	log.Fatalf("nothing listens on %s", addr)
}

// Must ends the run on err.
func Must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
