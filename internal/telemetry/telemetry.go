package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Stage names, in pipeline.Order.
const (
	ServerStage   = "tracing"
	UpstreamStage = "tracing_upstream"
)

// Options are what a configuration cannot say.
type Options struct {
	// Exporter, if set, receives the spans in place of the OTLP exporter
	// the configuration describes (tests), and turns tracing on without
	// an endpoint.
	Exporter sdktrace.SpanExporter
	// Sync exports each span as it ends instead of in batches (tests).
	Sync bool
	// Logger receives export failures.
	Logger *slog.Logger
	// Redact cleans the texts a span carries (error messages) of
	// secrets; nil: none.
	Redact func(string) string
}

// Tracer is the gateway's tracing: its provider, its tracer and the W3C
// propagator (trace context and baggage). A nil *Tracer is off.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	redact   func(string) string
}

// New builds the tracing cfg describes; nil (off) without an endpoint
// and without opts.Exporter.
func New(ctx context.Context, cfg config.Telemetry, opts Options) (*Tracer, error) {
	exp := opts.Exporter
	if exp == nil {
		if cfg.OTLP.Endpoint == "" {
			return nil, nil
		}
		var err error
		if exp, err = exporter(ctx, cfg.OTLP); err != nil {
			return nil, fmt.Errorf("telemetry.otlp: %w", err)
		}
	}
	if opts.Logger != nil {
		setErrorLogger(opts.Logger)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "mcpgate"
	}
	ratio := 1.0
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	res := resource.NewSchemaless(attribute.String("service.name", name))
	var proc sdktrace.SpanProcessor
	if opts.Sync {
		proc = sdktrace.NewSimpleSpanProcessor(exp)
	} else {
		proc = sdktrace.NewBatchSpanProcessor(exp)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithSpanProcessor(proc),
	)
	return &Tracer{
		provider: tp,
		tracer:   tp.Tracer("github.com/mcpgate/mcpgate"),
		prop:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		redact:   opts.Redact,
	}, nil
}

// exporter is the OTLP exporter of o.
func exporter(ctx context.Context, o config.OTLP) (sdktrace.SpanExporter, error) {
	url := strings.Contains(o.Endpoint, "://")
	insecure := o.Insecure || strings.HasPrefix(o.Endpoint, "http://")
	headers := make(map[string]string, len(o.Headers))
	for k, v := range o.Headers {
		headers[k] = string(v)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if o.Protocol == config.OTLPGRPC {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithHeaders(headers), otlptracegrpc.WithTimeout(timeout)}
		if url {
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.Endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(o.Endpoint))
		}
		if insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithHeaders(headers), otlptracehttp.WithTimeout(timeout)}
	if url {
		ep := o.Endpoint
		if u, err := neturl.Parse(ep); err == nil && (u.Path == "" || u.Path == "/") {
			u.Path = "/v1/traces" // a collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT names it
			ep = u.String()
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(ep))
	} else {
		opts = append(opts, otlptracehttp.WithEndpoint(o.Endpoint))
	}
	if insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	return otlptracehttp.New(ctx, opts...)
}

// Shutdown exports what is buffered and stops; nil-safe.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// ForceFlush exports what is buffered; nil-safe.
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// The OpenTelemetry SDK reports export failures to one process-wide
// handler: it logs them, once per distinct message a minute at most, to
// the logger of the last gateway that turned tracing on.
var (
	errLogger   atomic.Pointer[slog.Logger]
	errOnce     sync.Once
	errMu       sync.Mutex
	errLastSeen = map[string]time.Time{}
)

func setErrorLogger(l *slog.Logger) {
	errLogger.Store(l)
	errOnce.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			l := errLogger.Load()
			if l == nil || err == nil {
				return
			}
			msg := err.Error()
			errMu.Lock()
			now := time.Now()
			last, seen := errLastSeen[msg]
			if seen && now.Sub(last) < time.Minute {
				errMu.Unlock()
				return
			}
			if len(errLastSeen) > 64 {
				clear(errLastSeen)
			}
			errLastSeen[msg] = now
			errMu.Unlock()
			l.Warn("trace_export_failed", "error", msg)
		}))
	})
}
