// Package sse reads and writes Server-Sent Events as the MCP Streamable HTTP
// transport uses them: a reader for upstream streams (any line ending,
// comments, multi-line data, retry and id fields, bounded event size) and an
// allocation-free writer for client streams.
//
//	r := sse.NewReader(resp.Body, 4<<20)
//	for {
//		ev, err := r.Next()
//		if err != nil { break }
//		handle(ev.Data)
//	}
package sse
