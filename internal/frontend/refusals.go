package frontend

import (
	"bytes"
	"net"
	"net/http"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/core"
)

// JSONRefusals wraps a client listener so that the requests net/http
// refuses before any handler runs (431 for headers past
// http.Server.MaxHeaderBytes, 400 for a malformed request, 501 for an
// unknown transfer coding) are answered with a JSON-RPC error body, like
// every other refusal of the gateway, instead of net/http's plain text.
//
// net/http writes those answers straight to the connection in one write,
// as a status line followed by exactly plainErrorHeaders; handler
// responses go through its buffered writer and always carry a Date
// header, so they never match. It works on plain TCP; behind TLS the
// listener sees ciphertext and passes everything through unchanged.
func JSONRefusals(ln net.Listener) net.Listener { return refusalListener{ln} }

// plainErrorHeaders is what net/http's server writes after the status line
// of a refusal it answers itself (net/http/server.go, conn.serve).
const plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

type refusalListener struct{ net.Listener }

func (l refusalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return refusalConn{c}, nil
}

type refusalConn struct{ net.Conn }

func (c refusalConn) Write(b []byte) (int, error) {
	out, ok := jsonRefusal(b)
	if !ok {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// jsonRefusal rewrites one of net/http's plain-text refusals as the same
// status with a JSON-RPC error body (id null: no message was read).
func jsonRefusal(b []byte) ([]byte, bool) {
	const proto = "HTTP/1.1 "
	if len(b) < len(proto)+3 || string(b[:len(proto)]) != proto || (b[len(proto)] != '4' && b[len(proto)] != '5') {
		return nil, false
	}
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(rest, []byte(plainErrorHeaders[2:])) {
		return nil, false
	}
	status, err := strconv.Atoi(string(line[len(proto) : len(proto)+3]))
	if err != nil {
		return nil, false
	}
	text := string(rest[len(plainErrorHeaders)-2:])
	msg := "bad request: " + text
	if status == http.StatusRequestHeaderFieldsTooLarge {
		msg = "request header fields too large: the request's headers exceed the gateway's limit"
	}
	body := core.ErrorResponse("", core.NewError(core.CodeInvalidRequest, msg)).Raw
	out := make([]byte, 0, 160+len(body))
	out = append(out, line...)
	out = append(out, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\nConnection: close\r\n\r\n"...)
	return append(out, body...), true
}
