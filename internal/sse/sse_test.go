package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type got struct {
	ID, Name, Data string
	Retry          int
}

func readAll(t *testing.T, in string, max int) ([]got, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), max)
	var out []got
	for {
		ev, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, got{ev.ID, ev.Name, string(ev.Data), ev.Retry})
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []got
	}{
		{"simple", "data: {\"a\":1}\n\n", []got{{"", "", `{"a":1}`, -1}}},
		{"crlf and id", "id: s_1\r\ndata: x\r\n\r\n", []got{{"s_1", "", "x", -1}}},
		{"cr only", "data: x\rdata: y\r\r", []got{{"", "", "x\ny", -1}}},
		{"comments ignored", ": keep-alive\n\n:\n\ndata: x\n\n", []got{{"", "", "x", -1}}},
		{"priming then data", "id: s_0\nretry: 500\ndata: \n\nid: s_1\ndata: m\n\n",
			[]got{{"s_0", "", "", 500}, {"s_1", "", "m", -1}}},
		{"id persists", "id: 5\ndata: a\n\ndata: b\n\n", []got{{"5", "", "a", -1}, {"5", "", "b", -1}}},
		{"event name, no space", "event:message\ndata:z\n\n", []got{{"", "message", "z", -1}}},
		{"bad retry ignored", "retry: 1x\ndata: a\n\n", []got{{"", "", "a", -1}}},
		{"unterminated final event dropped", "data: a\n\ndata: b", []got{{"", "", "a", -1}}},
		{"id with NUL ignored", "id: a\x00b\ndata: c\n\n", []got{{"", "", "c", -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := readAll(t, tt.in, 0)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestReaderLimit(t *testing.T) {
	_, err := readAll(t, "data: "+strings.Repeat("x", 100)+"\n\n", 50)
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err = %v, want ErrEventTooLarge", err)
	}
	_, err = readAll(t, strings.Repeat("data: xxxxxxxx\n", 20)+"\n", 100)
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("multi-line err = %v, want ErrEventTooLarge", err)
	}
}

func TestWriter(t *testing.T) {
	if got := string(AppendPriming(nil, "3_0", 1000)); got != "id: 3_0\nretry: 1000\ndata: \n\n" {
		t.Errorf("priming = %q", got)
	}
	if got := string(AppendEvent(nil, "", []byte("a\r\nb\nc"))); got != "data: a\ndata: b\ndata: c\n\n" {
		t.Errorf("multi-line = %q", got)
	}
	retry := AppendRetry(nil, 250)
	if string(retry) != "retry: 250\n\n" {
		t.Errorf("retry = %q", retry)
	}
	// The reader hands a retry-only event over as one without data.
	evs, err := readAll(t, string(retry)+"data: x\n\n", 100)
	if err != nil || len(evs) != 2 || evs[0].Retry != 250 || len(evs[0].Data) != 0 || string(evs[1].Data) != "x" {
		t.Errorf("read back %+v, %v; want the retry, then the data", evs, err)
	}
}

// FuzzRoundTrip: any payload and id written by AppendEvent reads back the
// same (line breaks normalised to \n), and arbitrary input never panics.
func FuzzRoundTrip(f *testing.F) {
	f.Add("1_2", []byte(`{"jsonrpc":"2.0"}`), []byte("data: x\n\n"))
	f.Add("", []byte("a\r\nb"), []byte(":\r\n\r\nid: 1\rdata\r\r"))
	f.Fuzz(func(t *testing.T, id string, payload, raw []byte) {
		// Arbitrary streams: must not panic or loop.
		r := NewReader(bytes.NewReader(raw), 1<<16)
		for range 1000 {
			if _, err := r.Next(); err != nil {
				break
			}
		}
		if strings.ContainsAny(id, "\r\n\x00") {
			return
		}
		ev, err := NewReader(bytes.NewReader(AppendEvent(nil, id, payload)), 0).Next()
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(payload), "\r\n", "\n"), "\r", "\n")
		if string(ev.Data) != want || ev.ID != id {
			t.Fatalf("round trip: got id %q data %q, want id %q data %q", ev.ID, ev.Data, id, want)
		}
	})
}

func BenchmarkAppendEvent(b *testing.B) {
	payload := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEvent(buf[:0], "12_34", payload)
	}
}
