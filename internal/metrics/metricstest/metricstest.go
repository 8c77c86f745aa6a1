// Package metricstest reads metrics the way a scraper does, for tests:
// from a Gatherer, or from a /metrics endpoint parsed with the Prometheus
// text parser, so that assertions name series by metric and labels
// instead of matching strings.
//
//	fams, err := metricstest.Scrape(ctx, "http://"+adminAddr+"/metrics")
//	up, ok := fams.Value("mcpgate_store_up", "backend", "redis")
package metricstest

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are metric families by name.
type Families map[string]*dto.MetricFamily

// Gather collects g.
func Gather(g prometheus.Gatherer) (Families, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	f := make(Families, len(mfs))
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	return f, nil
}

// Scrape GETs url, asking for the text format, and parses the answer.
func Scrape(ctx context.Context, url string) (Families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return Parse(resp.Body)
}

// Parse reads the text exposition format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	return Families(mfs), nil
}

// Value returns the value of the first series of the named metric whose
// labels include every name, value pair in labels: a gauge's or counter's
// value, an untyped sample, or a histogram's or summary's sample count.
// ok is false when there is no such series.
func (f Families) Value(name string, labels ...string) (v float64, ok bool) {
	m := f.find(name, labels)
	if m == nil {
		return 0, false
	}
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount()), true
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount()), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

func (f Families) find(name string, labels []string) *dto.Metric {
	mf := f[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
					break
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}
