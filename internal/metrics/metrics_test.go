package metrics_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
)

// TestRegistryHandler: the handler serves the text format with the
// process and Go collectors, and what was registered.
func TestRegistryHandler(t *testing.T) {
	reg := metrics.New()
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: "things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()

	fams, err := metricstest.Scrape(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fams.Value("mcpgate_things_total"); !ok || v != 3 {
		t.Errorf("mcpgate_things_total = %v, %v; want 3", v, ok)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct == "" {
		t.Error("no Content-Type")
	}
}

// TestRegistriesAreIndependent: each gateway has its own registry, so two
// in one process register the same metrics without a clash, and nothing
// lands in the process-wide default registry.
func TestRegistriesAreIndependent(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	for _, reg := range []*metrics.Registry{a, b} {
		if _, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{Backend: "memory"}); err != nil {
			t.Fatalf("NewStoreMonitor: %v", err)
		}
	}
	fams, err := metricstest.Gather(prometheus.DefaultGatherer)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fams["mcpgate_store_up"]; ok {
		t.Error("mcpgate_store_up registered in the default registry")
	}
	// The same registry twice is a programming error, reported.
	_, err = metrics.NewStoreMonitor(a, metrics.StoreMonitorOptions{Backend: "memory"})
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second monitor on one registry: err = %v; want AlreadyRegisteredError", err)
	}
}
