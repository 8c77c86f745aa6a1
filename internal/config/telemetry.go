package config

import (
	"net/url"
	"strings"
	"time"
)

// Telemetry configures OpenTelemetry traces. Without an OTLP endpoint
// (the default) no span is made and tracing costs nothing.
type Telemetry struct {
	// OTLP is where spans are exported.
	OTLP OTLP `yaml:"otlp"`
	// ServiceName is the service.name resource attribute. Default
	// "mcpgate".
	ServiceName string `yaml:"service_name"`
	// SampleRatio is the share of new traces (those a client did not
	// start) that are recorded, 0 to 1; a client's sampled flag is
	// followed. Default 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// OTLP is an OTLP trace exporter.
type OTLP struct {
	// Endpoint is the collector: a URL (http://collector:4318, or with a
	// path for http/protobuf, which otherwise posts to /v1/traces) or
	// host:port. Empty: traces are off.
	Endpoint string `yaml:"endpoint"`
	// Protocol is http/protobuf (the default) or grpc.
	Protocol string `yaml:"protocol"`
	// Insecure sends without TLS. Default: false, unless the endpoint is
	// an http:// URL.
	Insecure bool `yaml:"insecure"`
	// Headers are sent with every export (a collector's token). Values
	// are secrets: never logged.
	Headers map[string]Secret `yaml:"headers"`
	// Timeout bounds one export. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Protocols of telemetry.otlp.protocol.
const (
	OTLPHTTP = "http/protobuf"
	OTLPGRPC = "grpc"
)

func (c *Config) telemetryDefaults() {
	t := &c.Telemetry
	if t.OTLP.Endpoint == "" {
		return
	}
	if t.OTLP.Protocol == "" {
		t.OTLP.Protocol = OTLPHTTP
	}
	if t.ServiceName == "" {
		t.ServiceName = "mcpgate"
	}
	if t.SampleRatio == nil {
		one := 1.0
		t.SampleRatio = &one
	}
	setDur(&t.OTLP.Timeout, 10*time.Second)
}

func (c *Config) validateTelemetry(bad func(path, format string, args ...any)) {
	t := &c.Telemetry
	if t.OTLP.Endpoint == "" {
		if t.OTLP.Protocol != "" || len(t.OTLP.Headers) > 0 || t.OTLP.Insecure {
			bad("telemetry.otlp.endpoint", "required when telemetry.otlp has other settings")
		}
		return
	}
	switch t.OTLP.Protocol {
	case OTLPHTTP, OTLPGRPC:
	default:
		bad("telemetry.otlp.protocol", "want %s or %s, got %q", OTLPHTTP, OTLPGRPC, t.OTLP.Protocol)
	}
	ep := t.OTLP.Endpoint
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("telemetry.otlp.endpoint", "want an http(s) URL or host:port, got %q", ep)
		} else if t.OTLP.Protocol == OTLPGRPC && u.Path != "" && u.Path != "/" {
			bad("telemetry.otlp.endpoint", "a grpc endpoint has no path, got %q", ep)
		}
	} else if i := strings.LastIndexByte(ep, ':'); i <= 0 || i == len(ep)-1 || strings.ContainsAny(ep, "/ ") {
		bad("telemetry.otlp.endpoint", "want an http(s) URL or host:port, got %q", ep)
	}
	for k := range t.OTLP.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			bad("telemetry.otlp.headers", "invalid header name %q", k)
		}
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1 || *r != *r) {
		bad("telemetry.sample_ratio", "want a number from 0 to 1, got %v", *r)
	}
	if t.OTLP.Timeout < 0 {
		bad("telemetry.otlp.timeout", "must not be negative")
	}
}
