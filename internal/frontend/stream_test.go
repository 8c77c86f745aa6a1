package frontend

import (
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

func mustDecode(t *testing.T, s string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStreamTimers drives the response timers with synctest: a fast
// response is plain JSON; a slow one becomes an SSE stream at StreamAfter
// (primed, for resumable streams) and gets keep-alive comments every
// KeepAlive until it finishes; after that nothing more is written.
func TestStreamTimers(t *testing.T) {
	opts := &Options{StreamAfter: 5 * time.Second, KeepAlive: 15 * time.Second}
	resp := `{"jsonrpc":"2.0","id":1,"result":{}}`

	t.Run("fast response is JSON", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := httptest.NewRecorder()
			st := newStream(rec, opts, "1", true)
			st.armKeepAlive(opts.StreamAfter)
			time.Sleep(4 * time.Second)
			st.finish(mustDecode(t, resp), 200)
			time.Sleep(time.Minute) // no timer fires after finish
			synctest.Wait()
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" || rec.Body.String() != resp {
				t.Fatalf("got %q %q", ct, rec.Body.String())
			}
		})
	})

	t.Run("slow response streams with keep-alives", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := httptest.NewRecorder()
			st := newStream(rec, opts, "7", true)
			st.armKeepAlive(opts.StreamAfter)
			time.Sleep(5*time.Second + time.Millisecond)
			synctest.Wait()
			st.mu.Lock()
			body := rec.Body.String()
			st.mu.Unlock()
			if rec.Header().Get("Content-Type") != "text/event-stream" || body != "id: 7_0\ndata: \n\n" {
				t.Fatalf("after StreamAfter: %q %q", rec.Header().Get("Content-Type"), body)
			}
			time.Sleep(31 * time.Second) // two keep-alive intervals
			synctest.Wait()
			st.mu.Lock()
			body = rec.Body.String()
			st.mu.Unlock()
			if n := strings.Count(body, ":\n\n"); n != 2 {
				t.Fatalf("%d keep-alives after 2 intervals: %q", n, body)
			}
			st.finish(mustDecode(t, resp), 200)
			time.Sleep(time.Hour)
			synctest.Wait()
			want := "id: 7_0\ndata: \n\n:\n\n:\n\nid: 7_1\ndata: " + resp + "\n\n"
			if got := rec.Body.String(); got != want {
				t.Fatalf("final stream:\n%q\nwant\n%q", got, want)
			}
		})
	})

	t.Run("non-resumable stream is not primed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := httptest.NewRecorder()
			st := newStream(rec, opts, "", false)
			st.armKeepAlive(opts.StreamAfter)
			time.Sleep(6 * time.Second)
			st.finish(mustDecode(t, resp), 200)
			synctest.Wait()
			if got, want := rec.Body.String(), "data: "+resp+"\n\n"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	})
}
