package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a request forwarded over the internal hop failed, the values of
// mcpgate_cluster_forward_errors_total's reason label.
const (
	// ForwardUnreachable: the owner replica could not be reached at all
	// (nothing was sent); the request waits for its lease to lapse and
	// the session is taken over, so the client may still be served.
	ForwardUnreachable = "unreachable"
	// ForwardBroken: the owner replica failed after the request was sent
	// (it died mid-request); the client got 502.
	ForwardBroken = "broken"
	// ForwardStore: the shared store could not say where the session
	// lives or let it be taken over; the client got 503.
	ForwardStore = "store"
)

var forwardReasons = []string{ForwardUnreachable, ForwardBroken, ForwardStore}

// ClusterMetrics counts what the replicas of a cluster do for one another.
// It exports:
//
//	mcpgate_cluster_forward_errors_total{reason} counter: requests for a session another replica owns that could not be served through it, by reason
//
// It is safe for use by multiple goroutines.
type ClusterMetrics struct {
	errs *prometheus.CounterVec
}

// NewClusterMetrics makes the cluster's metrics and registers them with
// reg; it fails if they are registered already. If reg is nil, they are
// kept but not exported.
func NewClusterMetrics(reg prometheus.Registerer) (*ClusterMetrics, error) {
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "cluster", Name: "forward_errors_total",
		Help: "Requests forwarded over the internal hop that failed, by reason (unreachable, broken, store).",
	}, []string{"reason"})
	if reg != nil {
		if err := reg.Register(errs); err != nil {
			return nil, err
		}
	}
	for _, r := range forwardReasons {
		errs.WithLabelValues(r)
	}
	return &ClusterMetrics{errs: errs}, nil
}

// ForwardFailed counts a forwarded request that failed for reason (one of
// the Forward* constants).
func (c *ClusterMetrics) ForwardFailed(reason string) { c.errs.WithLabelValues(reason).Inc() }
