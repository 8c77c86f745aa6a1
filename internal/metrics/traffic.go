package metrics

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
)

// StageName is the pipeline stage the request metrics belong to.
const StageName = "metrics"

// Methods are the method label values of the request metrics: the
// client requests of the MCP revisions mcpgate serves; any other method
// is counted as MethodOther, so a client cannot grow the series.
var Methods = []string{
	"initialize", "ping", "server/discover",
	"tools/list", "tools/call",
	"resources/list", "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
	"subscriptions/listen",
	"prompts/list", "prompts/get",
	"completion/complete", "logging/setLevel",
	"tasks/get", "tasks/list", "tasks/result", "tasks/cancel",
}

// MethodOther is the method label of a request whose method is not one
// of Methods.
const MethodOther = "other"

// Outcomes of a request (the outcome label of mcpgate_requests_total).
const (
	// OutcomeOK: a result came back.
	OutcomeOK = "ok"
	// OutcomeError: a JSON-RPC error came back, from the server or a
	// stage of the gateway (policy, quota, scope).
	OutcomeError = "error"
	// OutcomeTimeout: the request ran out of time (the route's timeout,
	// a quota's call_timeout).
	OutcomeTimeout = "timeout"
	// OutcomeFailed: no answer from the server (a transport failure, an
	// upstream gone, a 5xx); the client got an HTTP error.
	OutcomeFailed = "failed"
)

var outcomes = [...]string{OutcomeOK, OutcomeError, OutcomeTimeout, OutcomeFailed}

const (
	outOK = iota
	outError
	outTimeout
	outFailed
)

// methodIndex maps a method to its place in Methods; MethodOther is
// len(Methods).
var methodIndex = func() map[string]int {
	m := make(map[string]int, len(Methods))
	for i, name := range Methods {
		m[name] = i
	}
	return m
}()

// Causes of a session rejection (the cause label of
// mcpgate_session_rejections_total), from the Check of a Refused event.
const (
	CauseCap          = "cap"
	CauseCreationRate = "creation_rate"
	CauseAuth         = "auth"
	CauseHijack       = "hijack"
)

// durationBuckets span a cached answer on one host (half a millisecond)
// to a long tool call (about a minute); scrapers that ask for native
// histograms get those instead, at a resolution of about 10%.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Traffic holds the gateway's session and request metrics:
//
//	mcpgate_sessions_active{route,era}                  gauge: live sessions
//	mcpgate_sessions_created_total{route,era}           counter: sessions created (not those restored or adopted)
//	mcpgate_sessions_ended_total{route,reason}          counter: sessions ended, by session.Reason
//	mcpgate_session_rejections_total{route,cause}       counter: requests refused for a cap, the creation rate, authentication, a hijack
//	mcpgate_requests_total{route,method,outcome}        counter: client requests, by method (Methods, else "other") and outcome
//	mcpgate_request_duration_seconds{route,method}      histogram: their duration through the chain (classic buckets, native where asked)
//	mcpgate_quota_exceeded_total{quota,kind}            counter: quota decisions that refused or cut off (kind: the limit, "tool" for per-tool limits)
//	mcpgate_policy_denials_total{policy}                counter: policy decisions that refused a request or withheld a result
//
// Label values are bounded: routes, eras, methods, reasons and the names
// of configured quotas and policies; never a session id, principal or
// argument. It is safe for use by multiple goroutines.
type Traffic struct {
	active     *prometheus.GaugeVec
	created    *prometheus.CounterVec
	ended      *prometheus.CounterVec
	rejections *prometheus.CounterVec
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	quota      *prometheus.CounterVec
	denials    *prometheus.CounterVec
}

// NewTraffic makes the metrics and registers them with reg (nil: kept,
// not exported). A registry that holds them already (a second gateway
// given the same registry, a chain rebuilt) lends its collectors, so
// every caller counts into the same series.
func NewTraffic(reg prometheus.Registerer) (*Traffic, error) {
	t := &Traffic{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "sessions_active",
			Help: "Live sessions, by route and era.",
		}, []string{"route", "era"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sessions_created_total",
			Help: "Sessions created, by route and era (restored and adopted sessions are not counted again).",
		}, []string{"route", "era"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sessions_ended_total",
			Help: "Sessions ended, by route and reason.",
		}, []string{"route", "reason"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "session_rejections_total",
			Help: "Requests refused before a session served them, by route and cause (cap, creation_rate, auth, hijack).",
		}, []string{"route", "cause"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "requests_total",
			Help: "Client requests through a route's chain, by route, method and outcome (ok, error, timeout, failed).",
		}, []string{"route", "method", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "request_duration_seconds",
			Help:                            "Time from a client request entering the route's chain to its answer, by route and method.",
			Buckets:                         durationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"route", "method"}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "quota_exceeded_total",
			Help: "Quota decisions that refused a request, withheld a result, cut a call off or ended a session, by quota and kind of limit.",
		}, []string{"quota", "kind"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "policy_denials_total",
			Help: "Policy decisions that refused a request, its arguments or a result, by policy.",
		}, []string{"policy"}),
	}
	if reg == nil {
		return t, nil
	}
	var err error
	if t.active, err = reuse(reg, t.active); err != nil {
		return nil, err
	}
	if t.duration, err = reuse(reg, t.duration); err != nil {
		return nil, err
	}
	for _, c := range []**prometheus.CounterVec{&t.created, &t.ended, &t.rejections, &t.requests, &t.quota, &t.denials} {
		if *c, err = reuse(reg, *c); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// reuse registers c, or returns the collector reg holds already under
// its name.
func reuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Hooks count sessions as the session manager creates and ends them.
func (t *Traffic) Hooks() session.Hooks {
	return session.Hooks{
		Admitted: func(info *core.SessionInfo, restored string) {
			era := info.Era.String()
			t.active.WithLabelValues(info.Route, era).Inc()
			if restored == "" {
				t.created.WithLabelValues(info.Route, era).Inc()
			}
		},
		Ended: func(info *core.SessionInfo, reason session.Reason) {
			t.active.WithLabelValues(info.Route, info.Era.String()).Dec()
			t.ended.WithLabelValues(info.Route, string(reason)).Inc()
		},
	}
}

// Refused counts a refusal made before a chain ran (a pipeline.Refused
// event) whose check is a session rejection; other events are ignored.
// It is meant for the gateway-wide observer, which sees each refusal
// once.
func (t *Traffic) Refused(_ context.Context, ev *pipeline.Event) {
	if ev.Kind != pipeline.Refused {
		return
	}
	var cause string
	switch ev.Check {
	case pipeline.CheckCap:
		cause = CauseCap
	case pipeline.CheckRate:
		cause = CauseCreationRate
	case pipeline.CheckAuth:
		cause = CauseAuth
	case pipeline.CheckHijack:
		cause = CauseHijack
	default:
		return
	}
	t.rejections.WithLabelValues(ev.Route, cause).Inc()
}

// Decided counts a stage's decision (a pipeline.Decision event): a
// quota's refusal or cut-off, a policy's denial.
func (t *Traffic) Decided(_ context.Context, ev *pipeline.Event) {
	if ev.Kind != pipeline.Decision {
		return
	}
	switch {
	case ev.Quota != "":
		if ev.Action == pipeline.ActionWarning {
			return
		}
		kind := ev.Limit
		if strings.HasPrefix(kind, "tool:") {
			kind = "tool" // the tool's name is configured, but one series per quota kind is enough
		}
		t.quota.WithLabelValues(ev.Quota, kind).Inc()
	case ev.Policy != "":
		switch ev.Action {
		case pipeline.ActionDeny, pipeline.ActionInvalid, pipeline.ActionBlock:
			t.denials.WithLabelValues(ev.Policy).Inc()
		}
	}
}

// RouteRequests is one route's request metrics, their series resolved
// ahead of the first request: counting one costs two atomic additions and
// a histogram observation, no allocation.
type RouteRequests struct {
	// byMethod holds Methods' series then MethodOther's.
	byMethod []methodSeries
}

type methodSeries struct {
	outcomes [len(outcomes)]prometheus.Counter
	duration prometheus.Observer
}

// Route resolves the series of route's requests.
func (t *Traffic) Route(route string) *RouteRequests {
	rr := &RouteRequests{byMethod: make([]methodSeries, len(Methods)+1)}
	for i := range rr.byMethod {
		method := MethodOther
		if i < len(Methods) {
			method = Methods[i]
		}
		s := &rr.byMethod[i]
		for j, o := range outcomes {
			s.outcomes[j] = t.requests.WithLabelValues(route, method, o)
		}
		s.duration = t.duration.WithLabelValues(route, method)
	}
	return rr
}

// Stage is the route's metrics stage: the client's requests, counted and
// timed where they enter the chain (after the audit and logging stages,
// before auth, limits and policy, so their refusals are counted with the
// outcome the client got), and the stages' decisions.
func (t *Traffic) Stage(route string) pipeline.Stage {
	rr := t.Route(route)
	return pipeline.Stage{Name: StageName, ClientToServer: rr.Interceptor(), Observe: t.Decided}
}

// Interceptor counts and times client requests; other messages pass
// untouched.
func (rr *RouteRequests) Interceptor() core.Interceptor {
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Kind != core.KindRequest {
				return next(ctx, m)
			}
			start := time.Now()
			resp, err := next(ctx, m)
			rr.Observe(m.Method, time.Since(start), resp, err)
			return resp, err
		}
	}
}

// Observe counts one request of method that took d and was answered with
// resp or failed with err.
func (rr *RouteRequests) Observe(method string, d time.Duration, resp *core.Message, err error) {
	i, ok := methodIndex[method]
	if !ok {
		i = len(Methods)
	}
	s := &rr.byMethod[i]
	s.outcomes[outcomeOf(resp, err)].Inc()
	s.duration.Observe(d.Seconds())
}

func outcomeOf(resp *core.Message, err error) int {
	if err == nil {
		if resp != nil && resp.Kind == core.KindError {
			if resp.ErrorCode() == core.CodeRequestTimeout {
				return outTimeout
			}
			return outError
		}
		return outOK
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return outTimeout
	}
	if e := core.AsError(err); e != nil {
		switch {
		case e.Code == core.CodeRequestTimeout:
			return outTimeout
		case e.HTTPStatus() == http.StatusOK:
			return outError // answered as a JSON-RPC error
		case e.HTTPStatus() < 500:
			return outError // refused by the gateway (scope, rate, protocol)
		}
	}
	return outFailed
}
