package bolt

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// TestFlushFailureReported: a flush of buffered touches that fails in the
// background (here: the file is closed under the store) is reported as
// op "touch", so that it is counted, not only logged.
func TestFlushFailureReported(t *testing.T) {
	t.Parallel()
	s, err := Open(filepath.Join(t.TempDir(), "sessions.db"), Options{FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reported := make(chan string, 16)
	s.ReportErrors(func(op string) {
		select {
		case reported <- op:
		default:
		}
	})
	ctx := t.Context()
	if err := s.Put(ctx, &store.Record{ID: "s1", Created: time.Now(), LastActive: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, "s1", time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case op := <-reported:
		if op != "touch" {
			t.Errorf("reported op %q; want touch", op)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed flush was not reported")
	}
}
