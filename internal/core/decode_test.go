package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message // compared on the parsed fields
		code int     // expected error code, 0 for success
	}{
		{name: "request", in: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"progressToken":"p1"}}}`,
			want: Message{Kind: KindRequest, ID: "1", Method: "tools/call", Name: "echo", ProgressToken: []byte(`"p1"`), Meta: MetaObject}},
		{name: "string id and whitespace", in: " {\n \"id\" : \"a\\\"b\" , \"method\":\"ping\",\"jsonrpc\":\"2.0\"}\n",
			want: Message{Kind: KindRequest, ID: `"a\"b"`, Method: "ping"}},
		{name: "notification", in: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want: Message{Kind: KindNotification, Method: "notifications/initialized"}},
		{name: "response", in: `{"jsonrpc":"2.0","id":7,"result":{}}`, want: Message{Kind: KindResponse, ID: "7", Result: []byte(`{}`)}},
		{name: "error response null id", in: `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`,
			want: Message{Kind: KindError, ID: "null", Error: []byte(`{"code":-32700,"message":"x"}`)}},
		{name: "resource uri", in: `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a b"}}`,
			want: Message{Kind: KindRequest, ID: "2", Method: "resources/read", Name: "file:///a b"}},
		{name: "escaped method name", in: `{"jsonrpc":"2.0","id":2,"method":"tools\/call","params":{"n\u0061me":"x"}}`,
			want: Message{Kind: KindRequest, ID: "2", Method: "tools/call", Name: "x"}},
		{name: "modern meta", in: `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			want: Message{Kind: KindRequest, ID: "3", Method: "tools/list", MetaVersion: "2026-07-28", Meta: MetaObject | MetaCapabilities}},
		{name: "meta without capabilities", in: `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":[]}}}`,
			want: Message{Kind: KindRequest, ID: "3", Method: "tools/list", Meta: MetaObject}},
		{name: "int64 bounds", in: `{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping"}`,
			want: Message{Kind: KindRequest, ID: "-9223372036854775808", Method: "ping"}},
		{name: "largest id", in: `{"jsonrpc":"2.0","id":9223372036854775807,"result":{}}`,
			want: Message{Kind: KindResponse, ID: "9223372036854775807", Result: []byte(`{}`)}},
		{name: "negative id", in: `{"jsonrpc":"2.0","id":-3,"method":"ping"}`,
			want: Message{Kind: KindRequest, ID: "-3", Method: "ping"}},
		{name: "progress notification", in: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"progressToken":"p1","_meta":{"progressToken":"other"}}}`,
			want: Message{Kind: KindNotification, Method: "notifications/progress", ProgressToken: []byte(`"p1"`), Meta: MetaObject}},
		{name: "progressToken only in progress notifications", in: `{"jsonrpc":"2.0","method":"notifications/message","params":{"progressToken":"p1","ProgressToken":2}}`,
			want: Message{Kind: KindNotification, Method: "notifications/message"}},
		{name: "name ignored for other methods", in: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":5}}`,
			want: Message{Kind: KindRequest, ID: "1", Method: "tools/list"}},

		{name: "not json", in: `{"jsonrpc":`, code: CodeParseError},
		{name: "empty", in: ``, code: CodeParseError},
		{name: "array element not object", in: `"x"`, code: CodeInvalidRequest},
		{name: "wrong version", in: `{"jsonrpc":"1.0","id":1,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "missing version", in: `{"id":1,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "null id on request", in: `{"jsonrpc":"2.0","id":null,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "object id", in: `{"jsonrpc":"2.0","id":{},"method":"ping"}`, code: CodeInvalidRequest},
		{name: "bool id", in: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "fractional id", in: `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "exponent id", in: `{"jsonrpc":"2.0","id":1e999,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "integral exponent id", in: `{"jsonrpc":"2.0","id":1E2,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "integral fraction id", in: `{"jsonrpc":"2.0","id":2.0,"result":{}}`, code: CodeInvalidRequest},
		{name: "id beyond int64", in: `{"jsonrpc":"2.0","id":9223372036854775808,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "id below int64", in: `{"jsonrpc":"2.0","id":-9223372036854775809,"method":"ping"}`, code: CodeInvalidRequest},
		{name: "method not string", in: `{"jsonrpc":"2.0","id":1,"method":1}`, code: CodeInvalidRequest},
		{name: "empty method", in: `{"jsonrpc":"2.0","id":1,"method":""}`, code: CodeInvalidRequest},
		{name: "method and result", in: `{"jsonrpc":"2.0","id":1,"method":"x","result":{}}`, code: CodeInvalidRequest},
		{name: "result and error", in: `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, code: CodeInvalidRequest},
		{name: "response without id", in: `{"jsonrpc":"2.0","result":{}}`, code: CodeInvalidRequest},
		{name: "scalar params", in: `{"jsonrpc":"2.0","id":1,"method":"x","params":3}`, code: CodeInvalidRequest},
		{name: "nothing", in: `{"jsonrpc":"2.0","id":1}`, code: CodeInvalidRequest},
		{name: "case variant method", in: `{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}`, code: CodeInvalidRequest},
		{name: "case variant name", in: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","Name":"evil"}}`, code: CodeInvalidRequest},
		{name: "duplicate method", in: `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`, code: CodeInvalidRequest},
		{name: "duplicate name", in: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, code: CodeInvalidRequest},
		{name: "escaped duplicate", in: `{"jsonrpc":"2.0","id":1,"method":"a","\u006dethod":"b"}`, code: CodeInvalidRequest},
		{name: "name not string", in: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`, code: CodeInvalidParams},
		{name: "duplicate progress token", in: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progressToken":2}}`, code: CodeInvalidRequest},
		{name: "case variant progress token", in: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progresstoken":2}}`, code: CodeInvalidRequest},
		{name: "meta not object", in: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":[]}}`, code: CodeInvalidParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if tt.code != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Code != tt.code {
					t.Fatalf("Decode(%s) = %v, want error code %d", tt.in, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got := Message{Kind: m.Kind, ID: m.ID, Method: m.Method, Name: m.Name, ProgressToken: m.ProgressToken, MetaVersion: m.MetaVersion, Meta: m.Meta}
			if m.Kind == KindResponse {
				got.Result = m.Result
			}
			if m.Kind == KindError {
				got.Error = m.Error
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode mismatch (-want +got):\n%s", diff)
			}
			if !bytes.Equal(m.Raw, []byte(tt.in)) {
				t.Errorf("Raw not kept byte for byte")
			}
		})
	}
}

func TestDecodeBatch(t *testing.T) {
	ms, err := DecodeBatch([]byte(` [{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"notifications/x"}]`))
	if err != nil || len(ms) != 2 || ms[0].Kind != KindRequest || ms[1].Kind != KindNotification {
		t.Fatalf("DecodeBatch = %v, %v", ms, err)
	}
	if string(ms[0].Raw) != `{"jsonrpc":"2.0","id":1,"method":"ping"}` {
		t.Errorf("element Raw = %s", ms[0].Raw)
	}
	for _, bad := range []string{`[]`, `[1]`, `[{"jsonrpc":"2.0"}]`} {
		if _, err := DecodeBatch([]byte(bad)); err == nil {
			t.Errorf("DecodeBatch(%s) succeeded", bad)
		}
	}
	if !IsBatch([]byte("\n [")) || IsBatch([]byte(" {")) || IsBatch(nil) {
		t.Error("IsBatch")
	}
}

func TestErrorResponse(t *testing.T) {
	m := ErrorResponse("", NewError(CodeInvalidRequest, `bad "thing"`).WithData(map[string]any{"supported": []string{"a"}}))
	var got struct {
		ID    any `json:"id"`
		Error struct {
			Code    int
			Message string
			Data    map[string][]string
		}
	}
	if err := json.Unmarshal(m.Raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != nil || got.Error.Code != CodeInvalidRequest || got.Error.Message != `bad "thing"` || got.Error.Data["supported"][0] != "a" {
		t.Errorf("got %s", m.Raw)
	}
	if r := ResultResponse(`"x"`, []byte(`{"a":1}`)); string(r.Result) != `{"a":1}` || string(r.Raw) != `{"jsonrpc":"2.0","id":"x","result":{"a":1}}` {
		t.Errorf("ResultResponse = %s / %s", r.Raw, r.Result)
	}
}

// FuzzDecode checks Decode against encoding/json on the members it reads:
// whatever Decode accepts, a strict reference parse agrees with.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":1}}}`,
		`{"jsonrpc":"2.0","id":"x","result":{"content":[]}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"a","progress":1}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"meth\u006fd":"ping"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":1e999,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":-9223372036854775808,"result":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if IsBatch(b) {
			_, _ = DecodeBatch(b)
			return
		}
		m, err := Decode(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != CodeParseError && e.Code != CodeInvalidRequest && e.Code != CodeInvalidParams) {
				t.Fatalf("unexpected error type %v", err)
			}
			return
		}
		var ref map[string]json.RawMessage
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("Decode accepted what encoding/json rejects: %v", err)
		}
		for k := range ref {
			for _, sig := range topKeys {
				if k != sig && strings.EqualFold(k, sig) {
					t.Fatalf("case-variant key %q accepted", k)
				}
			}
		}
		if m.Method != "" {
			var method string
			if err := json.Unmarshal(ref["method"], &method); err != nil || method != m.Method {
				t.Fatalf("method %q, reference %q", m.Method, method)
			}
		}
		if !m.ID.IsZero() && !bytes.Equal(bytes.TrimSpace(ref["id"]), []byte(m.ID)) {
			t.Fatalf("id %s, reference %s", m.ID, ref["id"])
		}
		// An id is a string, an integer that fits int64, or (on an error
		// response) null: never a fraction or an exponent.
		if !m.ID.IsZero() && m.ID[0] != '"' && m.ID[0] != 'n' {
			if _, err := strconv.ParseInt(string(m.ID), 10, 64); err != nil {
				t.Fatalf("non-integer id %s accepted", m.ID)
			}
		}
		if m.Name != "" {
			var p map[string]json.RawMessage
			_ = json.Unmarshal(ref["params"], &p)
			var name string
			key := "name"
			if strings.HasPrefix(m.Method, "resources/") {
				key = "uri"
			}
			if err := json.Unmarshal(p[key], &name); err != nil || name != m.Name {
				t.Fatalf("name %q, reference %q", m.Name, name)
			}
		}
		if m.Method == "notifications/progress" && len(m.ProgressToken) > 0 {
			var p map[string]json.RawMessage
			_ = json.Unmarshal(ref["params"], &p)
			if !bytes.Equal(bytes.TrimSpace(p["progressToken"]), m.ProgressToken) {
				t.Fatalf("progress token %s, reference %s", m.ProgressToken, p["progressToken"])
			}
		}
		if !bytes.Equal(m.Raw, b) {
			t.Fatal("Raw changed")
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello world"},"_meta":{"progressToken":"tok-1"}}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAppendJSONString: what encoding/json reads back is the string
// (invalid UTF-8 as U+FFFD), and the encoding is encoding/json's without
// HTML escaping.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uo\te`, "nl\n\r\t\x01\x1f", "<&>", "\u2028\u2029", "é✓😀", "bad\xffutf8"} {
		got := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q → %s: %v", s, got, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want {
			t.Errorf("%q → %s → %q", s, got, back)
		}
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		if want := strings.TrimSuffix(b.String(), "\n"); string(got) != want {
			t.Errorf("%q → %s; encoding/json writes %s", s, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = AppendJSONString(make([]byte, 0, 64), "a \"b\" c") }); n > 1 {
		t.Errorf("%v allocations; want only the buffer's", n)
	}
}
