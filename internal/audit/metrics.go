package audit

import "github.com/prometheus/client_golang/prometheus"

var (
	recordsDesc = prometheus.NewDesc("mcpgate_audit_records_total",
		"Audit records delivered to the sink.", []string{"sink"}, nil)
	backlogDesc = prometheus.NewDesc("mcpgate_audit_backlog",
		"Audit records waiting for the sink, in memory and in its spool.", []string{"sink"}, nil)
	droppedDesc = prometheus.NewDesc("mcpgate_audit_dropped_total",
		"Audit records dropped because the sink's spool could not be written (its disk is full).", []string{"sink"}, nil)
)

// collector exports the trail's queues; it reads counters the queues
// keep anyway, so a record costs no metric update.
type collector struct{ t *Trail }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- recordsDesc
	ch <- backlogDesc
	ch <- droppedDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.t.mu.Lock()
	queues := c.t.queues
	c.t.mu.Unlock()
	for _, q := range queues {
		ch <- prometheus.MustNewConstMetric(recordsDesc, prometheus.CounterValue, float64(q.delivered.Load()), q.name)
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(max(0, q.backlog.Load())), q.name)
		ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(q.dropped.Load()), q.name)
	}
}
