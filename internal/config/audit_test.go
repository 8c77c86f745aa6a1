package config

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The example, as written.
const auditExample = `audit:
  payloads: true
  max_payload_bytes: 64KiB
  redact:
    paths: ["params.arguments.password", "result.content[*].text"]
    patterns: ['(?i)bearer [a-z0-9._-]+']
    detectors: [secrets]
  sinks:
    - file: {path: audit/audit.jsonl, max_size: 100MiB, max_files: 20}
    - stdout: {}
    - http: {url: https://siem.example.com/ingest, headers: {Authorization: "Bearer collector"}, batch: 500, flush: 1s}
  buffer: 10000
  spool_dir: audit/spool
`

func TestAuditExample(t *testing.T) {
	cfg, err := LoadBytes([]byte(auditExample + oneRoute))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Audit
	want := &Audit{
		Payloads: true, MaxPayloadBytes: 64 << 10, Buffer: 10000, SpoolDir: "audit/spool", Fsync: FsyncInterval,
		Redact: AuditRedact{Paths: []string{"params.arguments.password", "result.content[*].text"}, Patterns: []string{"(?i)bearer [a-z0-9._-]+"}, Detectors: []string{"secrets"}},
		Sinks: []AuditSink{
			{File: &AuditFileSink{Path: "audit/audit.jsonl", MaxSize: 100 << 20, MaxFiles: 20}},
			{Stdout: &AuditStdoutSink{}},
			{HTTP: &AuditHTTPSink{URL: "https://siem.example.com/ingest", Headers: map[string]Secret{"Authorization": "Bearer collector"}, Batch: 500, Flush: time.Second}},
		},
	}
	if d := cmp.Diff(want, a); d != "" {
		t.Fatalf("audit (-want +got):\n%s", d)
	}
	if got := []string{a.Sinks[0].Kind(), a.Sinks[1].Kind(), a.Sinks[2].Kind()}; !cmp.Equal(got, []string{"file", "stdout", "http"}) {
		t.Errorf("kinds %v", got)
	}
}

func TestAuditDefaults(t *testing.T) {
	cfg, err := LoadBytes([]byte("audit:\n  sinks: [{file: {path: a.jsonl}}, {http: {url: http://127.0.0.1:1/x}}]\n" + oneRoute))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Audit
	if a.Payloads || a.MaxPayloadBytes != DefaultAuditMaxPayload || a.Buffer != DefaultAuditBuffer || a.SpoolDir != "mcpgate-data/audit-spool" || a.Fsync != FsyncInterval {
		t.Errorf("defaults: %+v", a)
	}
	if f := a.Sinks[0].File; f.MaxSize != DefaultAuditMaxSize || f.MaxFiles != DefaultAuditMaxFiles {
		t.Errorf("file defaults: %+v", f)
	}
	if h := a.Sinks[1].HTTP; h.Batch != DefaultAuditBatch || h.Flush != DefaultAuditFlush {
		t.Errorf("http defaults: %+v", h)
	}
	if cfg, _ := LoadBytes([]byte(oneRoute)); cfg.Audit != nil {
		t.Error("no audit block: no trail")
	}
}

// TestAuditErrors keeps one fixture per problem with its exact message.
func TestAuditErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"no sink", "audit: {payloads: true}\n",
			[]string{"audit.sinks: at least one sink is required (file, stdout or http) (line 1)"}},
		{"two kinds in one sink", "audit:\n  sinks:\n    - {stdout: {}, file: {path: a}}\n",
			[]string{"audit.sinks[0]: set exactly one of file, stdout and http (line 3)"}},
		{"empty sink", "audit:\n  sinks:\n    - {}\n",
			[]string{"audit.sinks[0]: set exactly one of file, stdout and http (line 3)"}},
		{"file without path", "audit:\n  sinks:\n    - file: {max_size: 1MiB}\n",
			[]string{"audit.sinks[0].file.path: required (line 3)"}},
		{"two sinks on one file", "audit:\n  sinks:\n    - file: {path: a/b.jsonl}\n    - file: {path: a//b.jsonl}\n",
			[]string{`audit.sinks[1].file.path: another file sink writes "a//b.jsonl" (line 4)`}},
		{"tiny max_size", "audit:\n  sinks:\n    - file: {path: a, max_size: 100}\n",
			[]string{"audit.sinks[0].file.max_size: must be at least 4KiB (line 3)"}},
		{"max_files 1", "audit:\n  sinks:\n    - file: {path: a, max_files: 1}\n",
			[]string{"audit.sinks[0].file.max_files: want at least 2 (the current file and one rotated), or -1 to keep every file (line 3)"}},
		{"bad url", "audit:\n  sinks:\n    - http: {url: ftp://x}\n",
			[]string{`audit.sinks[0].http.url: want an http or https URL, got "ftp://x" (line 3)`}},
		{"bad header", "audit:\n  sinks:\n    - http: {url: http://x, headers: {\"a b\": v, Content-Type: text/plain}}\n",
			[]string{`audit.sinks[0].http.headers.Content-Type: managed by mcpgate; cannot be set (line 3)`, `audit.sinks[0].http.headers.a b: "a b" is not a valid header name (line 3)`}},
		{"bad path", "audit:\n  redact: {paths: [arguments.password]}\n  sinks: [{stdout: {}}]\n",
			[]string{`audit.redact.paths[0]: path "arguments.password": want a path starting with params, result or error (line 2)`}},
		{"bad pattern", "audit:\n  redact: {patterns: ['(']}\n  sinks: [{stdout: {}}]\n",
			[]string{"audit.redact.patterns[0]: invalid regular expression: error parsing regexp: missing closing ): `(` (line 2)"}},
		{"unknown detector", "audit:\n  redact: {detectors: [secrest]}\n  sinks: [{stdout: {}}]\n",
			[]string{`audit.redact.detectors[0]: unknown detector "secrest" (known: secrets) (line 2)`}},
		{"bad fsync", "audit:\n  fsync: sometimes\n  sinks: [{stdout: {}}]\n",
			[]string{`audit.fsync: want interval, batch, always or never, got "sometimes" (line 2)`}},
		{"bad buffer", "audit:\n  buffer: -1\n  sinks: [{stdout: {}}]\n",
			[]string{"audit.buffer: must be at least 1 (line 2)"}},
		{"misspelt", "audit:\n  sinks: [{stdout: {}}]\n  spool: x\n",
			[]string{"audit.spool: unknown field; known fields: payloads, max_payload_bytes, redact, sinks, buffer, spool_dir, fsync (line 3)"}},
	}
	for _, tt := range tests {
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
