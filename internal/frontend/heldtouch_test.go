package frontend

import (
	"context"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// touchCounter is a store that counts activity writes.
type touchCounter struct {
	store.Store
	touches chan time.Time
}

func (c *touchCounter) Touch(_ context.Context, _ string, at time.Time) error {
	c.touches <- at
	return nil
}

// TestHeldStreamKeepsRecordActive: a session held open by its GET stream
// alone records activity while the stream lasts, a quarter of its idle
// timeout apart, so its record does not lapse in the store (where another
// replica would then take it for ended).
func TestHeldStreamKeepsRecordActive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mgr := session.NewManager(session.Options{})
		defer mgr.Close(context.Background())
		f, err := New(Options{Sessions: mgr}, []*Route{{Name: "r", Path: "/mcp", Clients: EraAuto, IdleTimeout: 4 * time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		st := &touchCounter{Store: memory.New(), touches: make(chan time.Time, 16)}
		if err := f.Provision(Provisions{Store: st}); err != nil {
			t.Fatal(err)
		}
		g := newGWSession(f, f.routes().byPath["/mcp"], &core.SessionInfo{ID: "s1", Era: core.EraLegacy})
		defer g.cancel()

		ctx, leave := context.WithCancel(t.Context())
		r := httptest.NewRequest("GET", "/mcp", nil).WithContext(ctx)
		s := newStream(httptest.NewRecorder(), &f.opts, "0", false)
		done := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(done)
			g.waitStandalone(r, s, s.releasedCh())
		}()
		for i := 1; i <= 3; i++ {
			at := <-st.touches
			if got, want := at.Sub(start), time.Duration(i)*time.Minute; got != want {
				t.Errorf("touch %d after %v; want %v", i, got, want)
			}
		}
		leave()
		<-done
		synctest.Wait()
		if n := len(st.touches); n != 0 {
			t.Errorf("%d touches after the stream ended; want none", n)
		}
	})
}
