package frontend

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/limits"
	"github.com/mcpgate/mcpgate/internal/session"
)

// sharedWindow stands for a creation window in a store every replica
// shares; err is what its store answers.
type sharedWindow struct {
	err   error
	undos int
}

func (w *sharedWindow) Admit(context.Context, string, time.Time) (time.Duration, error) {
	return 0, w.err
}

func (w *sharedWindow) Undo(context.Context, string, time.Time) { w.undos++ }

// TestCreationRateUnavailable: a creation window that cannot decide (its
// store is out of reach, the gateway fails closed) refuses the creation
// with 503 and Retry-After, and the windows already passed get their
// slots back; a refusal is a 429.
func TestCreationRateUnavailable(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   string
	}{
		{"store unreachable", errors.New("connection refused"), http.StatusServiceUnavailable, "creation rate limit unavailable"},
		{"limited", limits.ErrLimited, http.StatusTooManyRequests, "per principal creation rate limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mgr := session.NewManager(session.Options{})
			defer mgr.Close(context.Background())
			global := limits.NewWindow(1, time.Minute, limits.WindowOptions{})
			shared := &sharedWindow{err: tt.err}
			f, err := New(Options{Sessions: mgr, Creation: CreationLimits{Global: global, PerPrincipal: shared}},
				[]*Route{{Name: "r", Path: "/mcp", Clients: EraAuto}})
			if err != nil {
				t.Fatal(err)
			}
			// Admission comes before anything is opened upstream: the
			// route needs none.
			body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
			req := httptest.NewRequest("POST", "http://localhost/mcp", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			rec := httptest.NewRecorder()
			f.Handler(ListenerPolicy{Loopback: true}).ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("got %d (Retry-After %q) %s; want %d mentioning %q", rec.Code, rec.Header().Get("Retry-After"), rec.Body, tt.wantStatus, tt.wantBody)
			}
			if ok, _ := global.Allow("", time.Now()); !ok {
				t.Error("the gateway-wide window kept the slot of a refused creation")
			}
			if shared.undos != 0 {
				t.Errorf("the window that refused was undone %d times", shared.undos)
			}
			if mgr.Len() != 0 {
				t.Errorf("%d sessions after a refused creation", mgr.Len())
			}
		})
	}
}
