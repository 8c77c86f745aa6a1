package metrics_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
)

// TestClusterForwardErrors: every reason exists from the start at zero,
// each failure counts under its reason, and a second registration on one
// registry is refused.
func TestClusterForwardErrors(t *testing.T) {
	reg := metrics.New()
	c, err := metrics.NewClusterMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c.ForwardFailed(metrics.ForwardBroken)
	c.ForwardFailed(metrics.ForwardBroken)
	c.ForwardFailed(metrics.ForwardStore)
	fams, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	for reason, want := range map[string]float64{metrics.ForwardBroken: 2, metrics.ForwardStore: 1, metrics.ForwardUnreachable: 0} {
		if v, ok := fams.Value("mcpgate_cluster_forward_errors_total", "reason", reason); !ok || v != want {
			t.Errorf("mcpgate_cluster_forward_errors_total{reason=%q} = %v, %v; want %v", reason, v, ok, want)
		}
	}
	var are prometheus.AlreadyRegisteredError
	if _, err := metrics.NewClusterMetrics(reg); !errors.As(err, &are) {
		t.Errorf("second registration: %v; want AlreadyRegisteredError", err)
	}
}
