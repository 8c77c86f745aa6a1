package sse

import (
	"bytes"
	"strconv"
)

// AppendEvent appends one SSE event with the given id (omitted when empty)
// and data to dst. Data containing line breaks is split over several data
// lines, so any payload round-trips through a Reader.
func AppendEvent(dst []byte, id string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, '\n', '\n')
}

// AppendPriming appends a priming event: an id and an empty data field,
// optionally with a retry hint in milliseconds (retry < 0 omits it).
func AppendPriming(dst []byte, id string, retry int) []byte {
	dst = append(dst, "id: "...)
	dst = append(dst, id...)
	dst = append(dst, '\n')
	if retry >= 0 {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, int64(retry), 10)
		dst = append(dst, '\n')
	}
	return append(dst, "data: \n\n"...)
}

// AppendRetry appends an event that only sets the client's reconnection
// delay, in milliseconds (no data: nothing is dispatched).
func AppendRetry(dst []byte, retry int) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, int64(retry), 10)
	return append(dst, '\n', '\n')
}

// KeepAlive is an SSE comment line that carries no event.
var KeepAlive = []byte(":\n\n")
