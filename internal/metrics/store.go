package metrics

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/store"
)

// StoreMonitorOptions configure NewStoreMonitor.
type StoreMonitorOptions struct {
	// Backend is the value of the backend label: the configured store
	// kind (embedded, memory, redis). If empty, "unknown".
	Backend string
	// Interval is the time between two health checks. If zero, 1s.
	Interval time.Duration
	// Timeout bounds one health check; a store slower than this counts as
	// unavailable. If zero, 1s.
	Timeout time.Duration
	// Logger receives store_unavailable when the store stops answering and
	// store_recovered, with the outage's length, when it answers again:
	// one line each per outage. If nil, nothing is logged.
	Logger *slog.Logger
}

// storeOps are the op label values that exist from the start, at zero,
// so that a rate over them needs no special case for "never failed": the
// calls the frontend makes, and the health check.
var storeOps = []string{"put", "get", "touch", "delete", "publish", "admit", "ping"}

// pingBuckets span a Redis round trip on one host (about 0.1ms) to the
// default timeout (1s), each four times the previous.
var pingBuckets = prometheus.ExponentialBuckets(0.0001, 4, 8)

type storeState int32

const (
	stateUnknown storeState = iota // not checked yet
	stateUp
	stateDown
)

// StoreMonitor follows the health of the session store: Run checks it on
// a timer (store.Pinger), Up reports the last answer (readiness), and
// CountError counts store calls that failed. It exports, each with a
// backend label:
//
//	mcpgate_store_up                  gauge: 1 if the last check succeeded, else 0 (0 before the first)
//	mcpgate_store_ping_seconds        histogram: round-trip time of successful checks
//	mcpgate_store_unavailable_total   counter: outages (each counts once, at its first failed check)
//	mcpgate_store_errors_total{op}    counter: failed calls, by operation (ping: failed checks)
//
// Only checks decide whether the store is up: a failed call is counted,
// but a call can fail for its own reasons (a record that does not
// decode). It is safe for use by multiple goroutines.
type StoreMonitor struct {
	backend  string
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	upGauge   prometheus.Gauge
	pings     prometheus.Observer
	outages   prometheus.Counter
	errs      *prometheus.CounterVec
	pingFails prometheus.Counter

	up atomic.Bool

	// mu orders state changes, so that each outage is counted and logged
	// exactly once.
	mu        sync.Mutex
	state     storeState
	downSince time.Time
	failed    int // failed checks in the current outage
}

// NewStoreMonitor makes a monitor and registers its metrics with reg; it
// fails if they are registered already. If reg is nil, the metrics are
// kept but not exported.
func NewStoreMonitor(reg prometheus.Registerer, opts StoreMonitorOptions) (*StoreMonitor, error) {
	if opts.Backend == "" {
		opts.Backend = "unknown"
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	backend := []string{"backend"}
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "store", Name: "up",
		Help: "Whether the session store answered its last health check (1) or not (0).",
	}, backend)
	pings := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "store", Name: "ping_seconds",
		Help:    "Round-trip time of successful session store health checks.",
		Buckets: pingBuckets,
	}, backend)
	outages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "store", Name: "unavailable_total",
		Help: "Times the session store became unavailable; each outage counts once.",
	}, backend)
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "store", Name: "errors_total",
		Help: "Failed session store calls, by operation; op=\"ping\" counts failed health checks.",
	}, []string{"backend", "op"})
	if reg != nil {
		var done []prometheus.Collector
		for _, c := range []prometheus.Collector{up, pings, outages, errs} {
			if err := reg.Register(c); err != nil {
				for _, d := range done {
					reg.Unregister(d)
				}
				return nil, err
			}
			done = append(done, c)
		}
	}
	m := &StoreMonitor{
		backend:  opts.Backend,
		interval: opts.Interval,
		timeout:  opts.Timeout,
		log:      opts.Logger,
		upGauge:  up.WithLabelValues(opts.Backend),
		pings:    pings.WithLabelValues(opts.Backend),
		outages:  outages.WithLabelValues(opts.Backend),
		errs:     errs,
	}
	for _, op := range storeOps {
		errs.WithLabelValues(opts.Backend, op)
	}
	m.pingFails = errs.WithLabelValues(opts.Backend, "ping")
	return m, nil
}

// Up reports whether the store answered the last check. It is false
// before Run's first check.
func (m *StoreMonitor) Up() bool { return m.up.Load() }

// Run checks st at once and then every Interval until ctx ends. A store
// that does not implement store.Pinger is taken to be up, and Run returns
// at once. A check cut short because ctx ended reports nothing, so
// cancel Run's ctx (and wait for it to return) before closing st.
func (m *StoreMonitor) Run(ctx context.Context, st store.Store) {
	p, ok := st.(store.Pinger)
	if !ok {
		m.report(nil)
		return
	}
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.check(ctx, p)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *StoreMonitor) check(ctx context.Context, p store.Pinger) {
	pctx, cancel := context.WithTimeout(ctx, m.timeout)
	start := time.Now()
	err := p.Ping(pctx)
	rtt := time.Since(start)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		m.pingFails.Inc()
	} else {
		m.pings.Observe(rtt.Seconds())
	}
	m.report(err)
}

// report records the outcome of a check: err nil means the store answered.
func (m *StoreMonitor) report(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		if m.state == stateDown {
			m.log.Info("store_recovered", "backend", m.backend,
				"outage", time.Since(m.downSince), "failed_checks", m.failed)
		}
		m.state, m.failed = stateUp, 0
		m.upGauge.Set(1)
		m.up.Store(true)
		return
	}
	m.failed++
	if m.state == stateDown {
		return
	}
	m.state, m.downSince = stateDown, time.Now()
	m.outages.Inc()
	m.upGauge.Set(0)
	m.up.Store(false)
	m.log.Error("store_unavailable", "backend", m.backend, "error", err)
}

// CountError counts a failed store call of operation op: a short,
// constant name such as put, get, touch, delete or publish (each op is a
// series). A missing record is not a failure; a call its caller
// cancelled is not the store's.
func (m *StoreMonitor) CountError(op string) {
	m.errs.WithLabelValues(m.backend, op).Inc()
}
