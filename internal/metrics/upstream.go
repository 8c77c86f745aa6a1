package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// checkBuckets span a check on one host (a millisecond) to a process
// that takes seconds to start, up to the default timeout (5s) and past.
var checkBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Upstreams holds the metrics of the routes' upstreams:
//
//	mcpgate_upstream_up{route}                      gauge: 1 while the route's health checks say its upstream answers, else 0 (routes with health checks only)
//	mcpgate_upstream_check_duration_seconds{route}  histogram: how long each health check took, answered or not
//	mcpgate_stdio_processes{route}                  gauge: the route's running stdio server processes (sessions', probes' and checks')
//
// It is safe for use by multiple goroutines.
type Upstreams struct {
	up        *prometheus.GaugeVec
	check     *prometheus.HistogramVec
	processes *prometheus.GaugeVec
}

// NewUpstreams makes the metrics and registers them with reg (nil: kept,
// not exported), taking over collectors reg holds already.
func NewUpstreams(reg prometheus.Registerer) (*Upstreams, error) {
	u := &Upstreams{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "upstream_up",
			Help: "1 while the route's upstream answers its health checks, 0 while it counts as down (routes with routes[].health).",
		}, []string{"route"}),
		check: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "upstream_check_duration_seconds",
			Help:    "Duration of the route's upstream health checks, answered or not.",
			Buckets: checkBuckets,
		}, []string{"route"}),
		processes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "stdio_processes",
			Help: "Running stdio server processes of the route.",
		}, []string{"route"}),
	}
	if reg == nil {
		return u, nil
	}
	var err error
	if u.up, err = reuse(reg, u.up); err != nil {
		return nil, err
	}
	if u.check, err = reuse(reg, u.check); err != nil {
		return nil, err
	}
	if u.processes, err = reuse(reg, u.processes); err != nil {
		return nil, err
	}
	return u, nil
}

// Up sets route's mcpgate_upstream_up.
func (u *Upstreams) Up(route string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	u.up.WithLabelValues(route).Set(v)
}

// Forget drops route's upstream_up series (its checks were turned off,
// or the route removed).
func (u *Upstreams) Forget(route string) { u.up.DeleteLabelValues(route) }

// Checked records one health check of route that took seconds.
func (u *Upstreams) Checked(route string, seconds float64) {
	u.check.WithLabelValues(route).Observe(seconds)
}

// Processes returns route's process gauge, to add one when a process
// starts and subtract one when it has been reaped.
func (u *Upstreams) Processes(route string) prometheus.Gauge {
	return u.processes.WithLabelValues(route)
}
