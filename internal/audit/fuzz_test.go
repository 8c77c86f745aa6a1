package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzRecord encodes records with arbitrary strings and payloads, and
// reads them back: the line is one JSON line, Parse accepts it with the
// same fields, and changing any byte of it is caught.
func FuzzRecord(f *testing.F) {
	f.Add("alice", "tools/call", "deleted", []byte(`{"name":"x","arguments":{"a":1}}`), uint16(10))
	f.Add("\u2028\"\\\x00é\xff", "", "", []byte(`"s"`), uint16(3))
	f.Fuzz(func(t *testing.T, principal, method, reason string, payload []byte, flip uint16) {
		if !json.Valid(payload) {
			payload = nil
		}
		payload = compact(payload)
		r := &Record{Kind: "message", Principal: principal, Method: method, Reason: reason, Params: payload, Size: len(payload)}
		line, hash := seal(nil, 7, time.Unix(1, 0), "c", encodeBody(nil, r), "p")
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not one line: %q", line)
		}
		line = line[:len(line)-1]
		got, err := Parse(line)
		if err != nil {
			t.Fatalf("Parse(%q): %v", line, err)
		}
		if got.Hash != hash || got.Seq != 7 || got.Prev != "p" || (utf8.ValidString(method) && got.Method != method) || got.Size != len(payload) {
			t.Fatalf("got %+v", got)
		}
		if !json.Valid(line) {
			t.Fatalf("invalid JSON %q", line)
		}
		i := int(flip) % len(line)
		changed := bytes.Clone(line)
		changed[i] ^= 0x01
		if r2, err := Parse(changed); err == nil {
			t.Fatalf("byte %d changed and the record still verifies: %+v", i, r2)
		}
	})
}

// FuzzVerify runs the verifier over arbitrary files: it never panics,
// and accepts a file only when every line is a record chained to the one
// before.
func FuzzVerify(f *testing.F) {
	a, _ := seal(nil, 1, time.Unix(1, 0), "c", encodeBody(nil, &Record{Kind: "trail", Event: "started"}), "")
	b, _ := seal(nil, 2, time.Unix(2, 0), "c", encodeBody(nil, &Record{Kind: "session", Event: "created"}), string(a[len(a)-67:len(a)-3]))
	f.Add(append(bytes.Clone(a), b...))
	f.Add([]byte("{\"seq\":1}\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		sum, err := verify([]string{"a.jsonl"}, func(string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			return
		}
		lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		if len(data) == 0 {
			lines = nil
		}
		if sum.Records != len(lines) {
			t.Fatalf("%d records accepted of %d lines", sum.Records, len(lines))
		}
		var prev *Record
		for _, l := range lines {
			r, err := Parse(l)
			if err != nil {
				t.Fatalf("accepted %q: %v", l, err)
			}
			if prev != nil && (r.Seq != prev.Seq+1 || r.Prev != prev.Hash) {
				t.Fatalf("accepted a broken chain")
			}
			prev = r
		}
	})
}

// FuzzParsePath: a path that parses writes back to one that parses to
// the same path, and applying it to any JSON payload never panics and
// leaves valid JSON.
func FuzzParsePath(f *testing.F) {
	f.Add("params.arguments.password", []byte(`{"arguments":{"password":"x"}}`))
	f.Add("result.content[*].text", []byte(`{"content":[{"text":"a"},{"text":"b"}]}`))
	f.Add(`params["a.b"][0]`, []byte(`{"a.b":[1,2]}`))
	f.Fuzz(func(t *testing.T, s string, payload []byte) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		q, err := ParsePath(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("%q wrote back as %q, which reads as %q (%v)", s, p.String(), q.String(), err)
		}
		if !json.Valid(payload) {
			return
		}
		r, _ := newRedactor([]string{s}, nil)
		if out := r.redact(p.Member, payload); !json.Valid(out) {
			t.Fatalf("redacting %s in %s gave %s", s, payload, out)
		}
	})
}
