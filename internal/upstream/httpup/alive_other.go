//go:build !unix

package httpup

import "net"

// peeker cannot look at the socket here: a connection the server closed is
// found when its next exchange fails.
type peeker struct{}

func (*peeker) init(net.Conn) {}

func (*peeker) alive() bool { return true }
