package frontend

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// limitErr is a cause that names its cap, as the stdio upstream's does.
type limitErr struct{}

func (limitErr) Error() string { return "over" }
func (limitErr) Unwrap() error { return upstream.ErrResourceLimit }
func (limitErr) ResourceLimit() string {
	return "resident memory 70 MiB over the cap sandbox.memory 64 MiB"
}

func TestUpstreamEndReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want session.Reason
	}{
		{upstream.ErrClosed, session.ReasonUpstreamGone},
		{fmt.Errorf("%w: exit status 3", upstream.ErrClosed), session.ReasonUpstreamGone},
		{errors.Join(upstream.ErrClosed, limitErr{}), session.ReasonResourceLimit},
		{fmt.Errorf("%w", upstream.ErrResourceLimit), session.ReasonResourceLimit},
	} {
		g := &gwSession{}
		if got := g.upstreamEnded(tc.err); got != tc.want {
			t.Errorf("upstreamEnded(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	g := &gwSession{}
	g.upstreamEnded(errors.Join(upstream.ErrClosed, limitErr{}))
	if d := g.endDetail.Load(); d == nil || *d != (limitErr{}).ResourceLimit() {
		t.Errorf("end detail = %v, want the cap's words", d)
	}
	if w, ok := upstream.ResourceLimit(errors.Join(upstream.ErrClosed, limitErr{})); !ok || w != (limitErr{}).ResourceLimit() {
		t.Errorf("ResourceLimit = %q, %v", w, ok)
	}
}
