package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Namespace starts the name of every metric mcpgate defines.
const Namespace = "mcpgate"

// Registry is one gateway's set of metrics. It is a prometheus.Registerer
// (give it to collectors, or to promauto.With) and a prometheus.Gatherer
// (combine it with others in prometheus.Gatherers). It is safe for use by
// multiple goroutines.
type Registry struct {
	reg     *prometheus.Registry
	handler http.Handler
}

var (
	_ prometheus.Registerer = (*Registry)(nil)
	_ prometheus.Gatherer   = (*Registry)(nil)
)

// scrapeTimeout bounds one gathering, so that a stuck collector costs a
// scrape a 503 rather than an admin connection held forever.
const scrapeTimeout = 10 * time.Second

// New returns a registry holding the process collector (CPU, memory, file
// descriptors: process_*) and the Go runtime collector (go_*).
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	return &Registry{
		reg: reg,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			// Serve what could be gathered; the error is counted in
			// promhttp_metric_handler_errors_total.
			ErrorHandling: promhttp.ContinueOnError,
			Registry:      reg,
			// Scrapes are rare; more at once is a misconfiguration or abuse.
			MaxRequestsInFlight: 4,
			Timeout:             scrapeTimeout,
		}),
	}
}

// Register adds c; it fails if a collector with the same metrics is
// already registered.
func (r *Registry) Register(c prometheus.Collector) error { return r.reg.Register(c) }

// MustRegister adds every collector and panics on a clash: for
// collectors whose names are fixed by the program, where a clash is a bug.
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// Unregister removes c and reports whether it was registered.
func (r *Registry) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// Gather implements prometheus.Gatherer.
func (r *Registry) Gather() ([]*dto.MetricFamily, error) { return r.reg.Gather() }

// Handler serves the registry in the Prometheus text (or, when the
// scraper asks for it, protobuf) exposition format, gzip-compressed when
// the scraper accepts it.
func (r *Registry) Handler() http.Handler { return r.handler }
