package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// flaky is a store whose health a test decides: Ping fails with err,
// or, when stalled, answers only when its context ends.
type flaky struct {
	store.Store
	mu      sync.Mutex
	err     error
	stalled bool
}

func (f *flaky) set(err error, stalled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.stalled = err, stalled
}

func (f *flaky) Ping(ctx context.Context) error {
	f.mu.Lock()
	err, stalled := f.err, f.stalled
	f.mu.Unlock()
	if stalled {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// logRecords is a JSON log kept for inspection.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecords) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns every record's message, with the attributes named in keys.
func (l *logRecords) records(t *testing.T, keys ...string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(l.buf.Bytes()))
	for dec.More() {
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		kept := map[string]any{"msg": rec["msg"]}
		for _, k := range keys {
			if v, ok := rec[k]; ok {
				kept[k] = v
			}
		}
		out = append(out, kept)
	}
	return out
}

// series reads the monitor's metrics for backend b.
type series struct {
	Up, Outages, PingErrors, Pings float64
}

func readSeries(t *testing.T, reg *metrics.Registry, b string) series {
	t.Helper()
	fams, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string, labels ...string) float64 {
		v, ok := fams.Value(name, append([]string{"backend", b}, labels...)...)
		if !ok {
			t.Fatalf("%s%v missing", name, labels)
		}
		return v
	}
	return series{
		Up:         get("mcpgate_store_up"),
		Outages:    get("mcpgate_store_unavailable_total"),
		PingErrors: get("mcpgate_store_errors_total", "op", "ping"),
		Pings:      get("mcpgate_store_ping_seconds"),
	}
}

// TestStoreMonitor walks a store through an outage on a fake clock: up,
// refusing, still refusing, back, too slow, back; each outage counted
// and logged once, its recovery logged with its exact length.
func TestStoreMonitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval, timeout = time.Second, 300 * time.Millisecond
		reg := metrics.New()
		var logs logRecords
		mon, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{
			Backend: "redis", Interval: interval, Timeout: timeout,
			Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if mon.Up() {
			t.Error("Up before the first check")
		}
		if got := readSeries(t, reg, "redis"); got != (series{}) {
			t.Errorf("before Run: %+v; want all zero", got)
		}
		st := &flaky{}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); mon.Run(ctx, st) }()

		// Each step sets the store's health, then lets the fake clock run
		// for wait: checks are due at 0s, 1s, 2s, ...
		tests := []struct {
			name    string
			err     error
			stalled bool
			wait    time.Duration
			want    series
		}{
			{"first check", nil, false, 0, series{Up: 1, Pings: 1}},
			{"refused", errors.New("connection refused"), false, interval, series{Up: 0, Outages: 1, PingErrors: 1, Pings: 1}},
			{"still refused", errors.New("connection refused"), false, 2 * interval, series{Up: 0, Outages: 1, PingErrors: 3, Pings: 1}},
			{"back", nil, false, interval, series{Up: 1, Outages: 1, PingErrors: 3, Pings: 2}},
			// The check due at 5s gives up at 5.3s.
			{"slower than the timeout", nil, true, interval + timeout, series{Up: 0, Outages: 2, PingErrors: 4, Pings: 2}},
			{"back again", nil, false, interval - timeout, series{Up: 1, Outages: 2, PingErrors: 4, Pings: 3}},
		}
		for _, tt := range tests {
			st.set(tt.err, tt.stalled)
			time.Sleep(tt.wait)
			synctest.Wait()
			if diff := cmp.Diff(tt.want, readSeries(t, reg, "redis")); diff != "" {
				t.Errorf("%s: metrics (-want +got):\n%s", tt.name, diff)
			}
			if wantUp := tt.want.Up == 1; mon.Up() != wantUp {
				t.Errorf("%s: Up() = %v; want %v", tt.name, mon.Up(), wantUp)
			}
		}
		cancel()
		<-done

		want := []map[string]any{
			{"msg": "store_unavailable", "level": "ERROR", "backend": "redis", "error": "connection refused"},
			// Down at the check of 1s, up at the check of 4s.
			{"msg": "store_recovered", "level": "INFO", "backend": "redis", "outage": float64(3 * interval), "failed_checks": float64(3)},
			{"msg": "store_unavailable", "level": "ERROR", "backend": "redis", "error": "context deadline exceeded"},
			{"msg": "store_recovered", "level": "INFO", "backend": "redis", "outage": float64(interval - timeout), "failed_checks": float64(1)},
		}
		if diff := cmp.Diff(want, logs.records(t, "level", "backend", "error", "outage", "failed_checks")); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

// TestStoreMonitorStop: a check cut short because the monitor stops is
// not an outage: nothing is counted or logged.
func TestStoreMonitorStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := metrics.New()
		var logs logRecords
		mon, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{Backend: "redis", Timeout: time.Hour, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		st := &flaky{stalled: true}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); mon.Run(ctx, st) }()
		synctest.Wait() // the first check is waiting for its answer
		cancel()
		<-done
		if got := readSeries(t, reg, "redis"); got != (series{}) {
			t.Errorf("after a stop mid-check: %+v; want all zero", got)
		}
		if recs := logs.records(t); len(recs) != 0 {
			t.Errorf("logged %v", recs)
		}
	})
}

// TestStoreMonitorWithoutPinger: a store that cannot be checked is up.
func TestStoreMonitorWithoutPinger(t *testing.T) {
	reg := metrics.New()
	mon, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{Backend: "custom"})
	if err != nil {
		t.Fatal(err)
	}
	type plain struct{ store.Store }
	mon.Run(t.Context(), plain{memory.New()}) // returns at once
	if !mon.Up() {
		t.Error("a store without Ping is not up")
	}
	if got := readSeries(t, reg, "custom"); got != (series{Up: 1}) {
		t.Errorf("metrics = %+v; want up only", got)
	}
}

// TestCountError: failed calls are counted by operation; the usual
// operations exist at zero from the start.
func TestCountError(t *testing.T) {
	reg := metrics.New()
	mon, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{Backend: "redis"})
	if err != nil {
		t.Fatal(err)
	}
	mon.CountError("put")
	mon.CountError("put")
	mon.CountError("owner")
	fams, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"put": 2, "get": 0, "touch": 0, "delete": 0, "publish": 0, "admit": 0, "ping": 0, "owner": 1}
	got := map[string]float64{}
	for _, m := range fams["mcpgate_store_errors_total"].GetMetric() {
		var op, backend string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "op":
				op = l.GetValue()
			case "backend":
				backend = l.GetValue()
			}
		}
		if backend != "redis" {
			t.Errorf("backend label %q; want redis", backend)
		}
		got[op] = m.GetCounter().GetValue()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mcpgate_store_errors_total by op (-want +got):\n%s", diff)
	}
}
