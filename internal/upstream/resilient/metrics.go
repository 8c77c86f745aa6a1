package resilient

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Metrics are the wrapper's collectors, one set per gateway registry:
// mcpgate_retries_total{route,reason} and mcpgate_breaker_state{route}.
type Metrics struct {
	retries *prometheus.CounterVec
	state   *prometheus.GaugeVec

	// owners is the wrapper whose breaker a route's gauge shows: a
	// reload builds the new one before it closes the old, and only the
	// last may remove the series.
	mu     sync.Mutex
	owners map[string]*Upstream
}

// NewMetrics registers the collectors on reg (reusing those already
// registered there, so every route and every reload shares them).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_retries_total",
			Help: "Requests sent to an upstream again after a transient failure, by route and reason (connect, reset, timeout, 502, 503, 504, 429).",
		}, []string{"route", "reason"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpgate_breaker_state",
			Help: "State of a route's upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"route"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.retries); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.retries = are.ExistingCollector.(*prometheus.CounterVec)
	}
	if err := reg.Register(m.state); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.state = are.ExistingCollector.(*prometheus.GaugeVec)
	}
	return m, nil
}

// retryCounters are one route's counters, bound ahead of the hot path.
type retryCounters [len(classNames)]prometheus.Counter

func (m *Metrics) retriesOf(route string) *retryCounters {
	var rc retryCounters
	if m == nil {
		return &rc
	}
	for c := ClassConnect; int(c) < len(classNames); c++ {
		rc[c] = m.retries.WithLabelValues(route, c.String())
	}
	return &rc
}

func (rc *retryCounters) inc(c Class) {
	if int(c) < len(rc) && rc[c] != nil {
		rc[c].Inc()
	}
}

// stateGauge is one route's breaker gauge; nil without metrics.
type stateGauge struct{ g prometheus.Gauge }

func (m *Metrics) stateOf(route string, u *Upstream) stateGauge {
	if m == nil {
		return stateGauge{}
	}
	m.mu.Lock()
	if m.owners == nil {
		m.owners = map[string]*Upstream{}
	}
	m.owners[route] = u
	m.mu.Unlock()
	return stateGauge{m.state.WithLabelValues(route)}
}

// release removes a route's gauge when u is still the one it shows (the
// route is gone, or lost its breaker).
func (m *Metrics) release(route string, u *Upstream) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owners[route] == u {
		delete(m.owners, route)
		m.state.DeleteLabelValues(route)
	}
}

// set shows s: gobreaker numbers closed 0, half-open 1, open 2, as the
// metric does.
func (s stateGauge) set(st gobreaker.State) {
	if s.g != nil {
		s.g.Set(float64(st))
	}
}
