package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/store"
)

// RunProcs runs the store.Procs conformance suite against fresh stores
// made by open, which must implement store.Procs. The suite closes every
// store it opens.
func RunProcs(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	o := func(t *testing.T) (store.Store, store.Procs) {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		ps, ok := s.(store.Procs)
		if !ok {
			t.Fatalf("%T does not implement store.Procs", s)
		}
		return s, ps
	}
	ctx := context.Background()
	a := store.Proc{Pid: 100, Pgid: 100, Start: 5000, Boot: "b1", Gateway: 7, GatewayStart: 10, Route: "echo"}
	b := store.Proc{Pid: 101, Pgid: 101, Start: 5001, Boot: "b1", Gateway: 7, GatewayStart: 10}
	sorted := func(ps []store.Proc) []store.Proc {
		slices.SortFunc(ps, func(x, y store.Proc) int { return strings.Compare(x.Key(), y.Key()) })
		return ps
	}
	t.Run("PerHost", func(t *testing.T) {
		_, s := o(t)
		for _, p := range []store.Proc{a, b} {
			if err := s.PutProc(ctx, "host-1", p); err != nil {
				t.Fatal(err)
			}
		}
		other := store.Proc{Pid: 100, Pgid: 100, Start: 9, Boot: "b2"}
		if err := s.PutProc(ctx, "host-2", other); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListProcs(ctx, "host-1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]store.Proc{a, b}, sorted(got)); d != "" {
			t.Errorf("host-1 (-want +got):\n%s", d)
		}
		got, err = s.ListProcs(ctx, "host-2")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]store.Proc{other}, got); d != "" {
			t.Errorf("host-2 (-want +got):\n%s", d)
		}
		if got, err := s.ListProcs(ctx, "host-3"); err != nil || len(got) != 0 {
			t.Errorf("unknown host: %v, %v; want none", got, err)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		_, s := o(t)
		for _, p := range []store.Proc{a, b} {
			if err := s.PutProc(ctx, "host-1", p); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteProc(ctx, "host-1", a.Key()); err != nil {
			t.Fatal(err)
		}
		for _, missing := range [][2]string{{"host-1", a.Key()}, {"host-1", "1.2"}, {"nowhere", "1.2"}} {
			if err := s.DeleteProc(ctx, missing[0], missing[1]); err != nil {
				t.Errorf("delete missing %v: %v", missing, err)
			}
		}
		got, err := s.ListProcs(ctx, "host-1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]store.Proc{b}, got); d != "" {
			t.Errorf("after delete (-want +got):\n%s", d)
		}
	})
	t.Run("Replace", func(t *testing.T) {
		_, s := o(t)
		c := a
		c.Route = "other"
		for _, p := range []store.Proc{a, c} {
			if err := s.PutProc(ctx, "host-1", p); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ListProcs(ctx, "host-1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]store.Proc{c}, got); d != "" {
			t.Errorf("same key twice (-want +got):\n%s", d)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		st, s := o(t)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.PutProc(ctx, "host-1", a); !errors.Is(err, store.ErrClosed) {
			t.Errorf("PutProc after Close: %v, want ErrClosed", err)
		}
		if _, err := s.ListProcs(ctx, "host-1"); !errors.Is(err, store.ErrClosed) {
			t.Errorf("ListProcs after Close: %v, want ErrClosed", err)
		}
		if err := s.DeleteProc(ctx, "host-1", a.Key()); !errors.Is(err, store.ErrClosed) {
			t.Errorf("DeleteProc after Close: %v, want ErrClosed", err)
		}
	})
}
