package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// ErrEventTooLarge is returned when an event exceeds the reader's limit.
var ErrEventTooLarge = errors.New("sse: event too large")

// Event is one dispatched SSE event.
type Event struct {
	// ID is the last event id seen (it persists across events, per the SSE
	// rules); HasID reports whether this event carried an id field itself.
	ID    string
	HasID bool
	// Name is the event type; empty means "message".
	Name string
	// Data is the event's data lines joined with "\n". It is only valid
	// until the next call to Next.
	Data []byte
	// Retry is the reconnection time in milliseconds, or -1 if not set by
	// this event.
	Retry int
}

// Reader parses an SSE stream.
type Reader struct {
	br     *bufio.Reader
	max    int
	lastID string
	data   []byte
	line   []byte
}

// NewReader returns a reader that rejects events larger than max bytes
// (max <= 0 means 4 MiB).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = 4 << 20
	}
	return &Reader{br: bufio.NewReaderSize(r, 16<<10), max: max}
}

// Next returns the next event with a non-empty data buffer, or an id-only
// event (a priming event) so callers can track ids. It returns io.EOF at
// the end of the stream; an event not terminated by a blank line before EOF
// is discarded, as the SSE rules say.
func (r *Reader) Next() (Event, error) {
	r.data = r.data[:0]
	ev := Event{Retry: -1}
	sawData := false
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if !sawData && !ev.HasID && ev.Retry < 0 {
				ev = Event{Retry: -1}
				continue
			}
			ev.ID = r.lastID
			if sawData && len(r.data) > 0 {
				r.data = r.data[:len(r.data)-1] // trailing newline
			}
			ev.Data = r.data
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if len(r.data)+len(value)+1 > r.max {
				return Event{}, ErrEventTooLarge
			}
			r.data = append(r.data, value...)
			r.data = append(r.data, '\n')
			sawData = true
		case "event":
			ev.Name = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.lastID = string(value)
				ev.HasID = true
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 && isDigits(value) {
				ev.Retry = n
			}
		}
	}
}

// LastID is the last event id the stream set.
func (r *Reader) LastID() string { return r.lastID }

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// readLine reads one line ending in \n, \r\n or \r.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			if err == io.EOF && len(r.line) > 0 {
				// An unterminated final line: the event is incomplete.
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch c {
		case '\n':
			return r.line, nil
		case '\r':
			if next, err := r.br.Peek(1); err == nil && next[0] == '\n' {
				_, _ = r.br.ReadByte()
			}
			return r.line, nil
		}
		if len(r.line) >= r.max {
			return nil, ErrEventTooLarge
		}
		r.line = append(r.line, c)
	}
}
