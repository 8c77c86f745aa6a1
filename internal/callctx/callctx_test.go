package callctx_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mcpgate/mcpgate/internal/callctx"
)

type hinter struct{ got []int }

func (h *hinter) RetryHint(ms int) { h.got = append(h.got, ms) }

// perCall is a context of the kind the frontend makes: it answers Key with
// the Values it holds.
type perCall struct {
	context.Context
	v callctx.Values
}

func (c *perCall) Value(key any) any {
	if _, ok := key.(callctx.Key); ok {
		return &c.v
	}
	return c.Context.Value(key)
}

func TestOf(t *testing.T) {
	t.Parallel()
	if v := callctx.Of(context.Background()); v != nil {
		t.Fatalf("Of(Background) = %v, want nil", v)
	}
	h := &hinter{}
	c := &perCall{Context: context.Background(), v: callctx.Values{Caller: &callctx.Caller{Principal: "alice"}, Hint: h}}
	// A value added below the per-call context does not hide it.
	type other struct{}
	ctx := context.WithValue(c, other{}, 1)
	v := callctx.Of(ctx)
	if v == nil || v.Caller.Principal != "alice" {
		t.Fatalf("Of = %+v, want alice's values", v)
	}
	v.Hint.RetryHint(250)
	if len(h.got) != 1 || h.got[0] != 250 {
		t.Fatalf("hint got %v, want [250]", h.got)
	}
	w := callctx.Of(callctx.WithValues(context.Background(), &callctx.Values{Caller: &callctx.Caller{Principal: "bob"}}))
	if w == nil || w.Caller.Principal != "bob" {
		t.Fatalf("Of(WithValues) = %+v, want bob's values", w)
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	c := &perCall{Context: context.Background(), v: callctx.Values{Hint: &hinter{}}}
	var ctx context.Context = c
	if n := testing.AllocsPerRun(100, func() {
		if callctx.Of(ctx) == nil {
			t.Fatal("no values")
		}
	}); n != 0 {
		t.Fatalf("Of allocates %v per lookup, want 0", n)
	}
}

func TestCallerLogValueHidesToken(t *testing.T) {
	t.Parallel()
	c := &callctx.Caller{Principal: "alice", Token: "secret-token"}
	if s := fmt.Sprint(c.LogValue()); s == "" || contains(s, "secret-token") || contains(s, "alice") {
		t.Fatalf("LogValue = %q: must name neither the token nor the raw principal", s)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
