package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

func Example() {
	reg := metrics.New()
	mon, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{Backend: "memory"})
	if err != nil {
		panic(err) // its metrics were registered already
	}
	// The gateway runs the monitor until it shuts down; it pings the
	// store at once, then every second.
	ctx, cancel := context.WithCancel(context.Background())
	st := memory.New()
	done := make(chan struct{})
	go func() { defer close(done); mon.Run(ctx, st) }()
	defer func() { cancel(); <-done; _ = st.Close() }()
	for !mon.Up() {
		time.Sleep(time.Millisecond)
	}
	// Where a store call fails and is handled:
	mon.CountError("get")

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", reg.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "mcpgate_store_up") || strings.HasPrefix(l, `mcpgate_store_errors_total{backend="memory",op="get"}`) {
			fmt.Println(l)
		}
	}
	// Output:
	// mcpgate_store_errors_total{backend="memory",op="get"} 1
	// mcpgate_store_up{backend="memory"} 1
}
