package config

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTelemetryDefaults: off without an endpoint; with one, the defaults.
func TestTelemetryDefaults(t *testing.T) {
	c, err := LoadBytes([]byte(oneRoute))
	if err != nil {
		t.Fatal(err)
	}
	if c.Telemetry.OTLP.Endpoint != "" || c.Telemetry.SampleRatio != nil || c.Telemetry.OTLP.Protocol != "" {
		t.Errorf("off: %+v", c.Telemetry)
	}
	c, err = LoadBytes([]byte("telemetry:\n  otlp: {endpoint: 'http://collector:4318', headers: {Authorization: Bearer t0ken-abc}}\n" + oneRoute))
	if err != nil {
		t.Fatal(err)
	}
	tm := c.Telemetry
	if tm.OTLP.Protocol != OTLPHTTP || tm.ServiceName != "mcpgate" || tm.SampleRatio == nil || *tm.SampleRatio != 1 || tm.OTLP.Timeout != 10*time.Second {
		t.Errorf("defaults: %+v", tm)
	}
	found := false
	for _, s := range c.Secrets() {
		found = found || s == "Bearer t0ken-abc"
	}
	if !found {
		t.Error("the collector's header is not a secret")
	}
	c, err = LoadBytes([]byte("telemetry:\n  otlp: {endpoint: 'collector:4317', protocol: grpc, insecure: true}\n  sample_ratio: 0.25\n  service_name: gw\n" + oneRoute))
	if err != nil {
		t.Fatal(err)
	}
	if *c.Telemetry.SampleRatio != 0.25 || c.Telemetry.ServiceName != "gw" {
		t.Errorf("%+v", c.Telemetry)
	}
}

func TestTelemetryErrors(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []string
	}{
		{"protocol", "telemetry:\n  otlp: {endpoint: 'http://c:4318', protocol: thrift}\n",
			[]string{`telemetry.otlp.protocol: want http/protobuf or grpc, got "thrift" (line 2)`}},
		{"endpoint", "telemetry:\n  otlp: {endpoint: 'ftp://c'}\n",
			[]string{`telemetry.otlp.endpoint: want an http(s) URL or host:port, got "ftp://c" (line 2)`}},
		{"no port", "telemetry:\n  otlp: {endpoint: collector}\n",
			[]string{`telemetry.otlp.endpoint: want an http(s) URL or host:port, got "collector" (line 2)`}},
		{"grpc path", "telemetry:\n  otlp: {endpoint: 'http://c:4317/v1/traces', protocol: grpc}\n",
			[]string{`telemetry.otlp.endpoint: a grpc endpoint has no path, got "http://c:4317/v1/traces" (line 2)`}},
		{"ratio", "telemetry:\n  otlp: {endpoint: 'c:4318'}\n  sample_ratio: 1.5\n",
			[]string{"telemetry.sample_ratio: want a number from 0 to 1, got 1.5 (line 3)"}},
		{"headers without endpoint", "telemetry:\n  otlp: {headers: {A: b}}\n",
			[]string{"telemetry.otlp.endpoint: required when telemetry.otlp has other settings (line 2)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.in + oneRoute))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v; want *Error", err)
			}
			var got []string
			for _, p := range cerr.Problems {
				got = append(got, p.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
