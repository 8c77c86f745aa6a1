package config

import (
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/core"
)

// Audit is the audit trail: one JSON record per message crossing the
// gateway in either direction, per session lifecycle event, per refusal
// and per policy or quota decision, each chained to the one before by its
// SHA-256 (see internal/audit). Absent (the default): no trail, and the
// audit stage is left out of every chain.
type Audit struct {
	// Payloads records arguments and results (redacted); false records
	// metadata only (method, names, sizes, outcome). Default false.
	Payloads bool `yaml:"payloads"`
	// MaxPayloadBytes bounds one recorded payload; a longer one is
	// truncated, with its full size and SHA-256 recorded. Default 64KiB.
	MaxPayloadBytes ByteSize `yaml:"max_payload_bytes"`
	// Redact removes secrets from recorded payloads.
	Redact AuditRedact `yaml:"redact"`
	// Sinks are where records go; at least one. Every sink gets every
	// record, in order.
	Sinks []AuditSink `yaml:"sinks"`
	// Buffer is how many records each sink holds in memory before the
	// rest go to its spool on disk. Default 10000.
	Buffer int `yaml:"buffer"`
	// SpoolDir holds what a slow or failing sink cannot take yet,
	// delivered later in order, and the chain's head. Default
	// <store.data_dir>/audit-spool.
	SpoolDir string `yaml:"spool_dir"`
	// Fsync is when file sinks flush their writes to stable storage:
	// interval (at most once a second after writes; the default), batch
	// (after each batch of records is written), always (after every
	// record), or never (at rotation and shutdown only, leaving the rest
	// to the operating system). Whatever the policy, a record is written
	// to the file as soon as the sink takes it, so a kill -9 loses only
	// records still queued in memory; fsync bounds what a power loss or
	// kernel crash loses (interval: about a second of records).
	Fsync string `yaml:"fsync"`
}

// Fsync policies for Audit.Fsync.
const (
	FsyncInterval = "interval"
	FsyncBatch    = "batch"
	FsyncAlways   = "always"
	FsyncNever    = "never"
)

// AuditRedact says what is removed from recorded payloads before they
// leave the gateway; a removed value is replaced by "[REDACTED]".
type AuditRedact struct {
	// Paths are JSON paths into the message: params.arguments.password,
	// result.content[*].text ([*] is every element of an array, [N] one).
	Paths []string `yaml:"paths"`
	// Patterns are regular expressions (Go syntax); every match inside a
	// JSON string value is replaced.
	Patterns []string `yaml:"patterns"`
	// Detectors name built-in sets of secret detectors, the same as
	// policies use: secrets.
	Detectors []string `yaml:"detectors"`
}

// AuditSink is exactly one of File, Stdout and HTTP.
type AuditSink struct {
	File   *AuditFileSink   `yaml:"file"`
	Stdout *AuditStdoutSink `yaml:"stdout"`
	HTTP   *AuditHTTPSink   `yaml:"http"`
}

// Kind reports "file", "stdout", "http" or "".
func (s AuditSink) Kind() string {
	switch {
	case s.File != nil:
		return "file"
	case s.Stdout != nil:
		return "stdout"
	case s.HTTP != nil:
		return "http"
	}
	return ""
}

// AuditFileSink writes JSON lines to a file, rotated by size; the chain
// continues across files.
type AuditFileSink struct {
	// Path of the current file; rotated files are kept beside it as
	// <name>-<time>.<ext>. Required.
	Path string `yaml:"path"`
	// MaxSize rotates the file before it grows past this. Default 100MiB.
	MaxSize ByteSize `yaml:"max_size"`
	// MaxFiles is how many files are kept, the current one included; the
	// oldest rotated file is removed past it. Default 20; -1 keeps every
	// file.
	MaxFiles int `yaml:"max_files"`
}

// AuditStdoutSink writes JSON lines to the standard output.
type AuditStdoutSink struct{}

// AuditHTTPSink POSTs batches of records (newline-delimited JSON,
// application/x-ndjson) to a collector; a failed batch is retried, with
// backoff, until it is taken.
type AuditHTTPSink struct {
	// URL is the collector's endpoint (http or https). Required.
	URL string `yaml:"url"`
	// Headers are sent with every batch (a collector's token). Values are
	// secrets: never logged.
	Headers map[string]Secret `yaml:"headers"`
	// Batch is the most records one POST carries. Default 500.
	Batch int `yaml:"batch"`
	// Flush is the longest a record waits for its batch to fill. Default 1s.
	Flush time.Duration `yaml:"flush"`
}

// Defaults of the audit trail.
const (
	DefaultAuditMaxPayload = 64 << 10
	DefaultAuditBuffer     = 10000
	DefaultAuditMaxSize    = 100 << 20
	DefaultAuditMaxFiles   = 20
	DefaultAuditBatch      = 500
	DefaultAuditFlush      = time.Second
)

func (c *Config) auditDefaults() {
	a := c.Audit
	if a == nil {
		return
	}
	if a.MaxPayloadBytes == 0 {
		a.MaxPayloadBytes = DefaultAuditMaxPayload
	}
	if a.Buffer == 0 {
		a.Buffer = DefaultAuditBuffer
	}
	if a.SpoolDir == "" {
		a.SpoolDir = filepath.Join(c.Store.DataDir, "audit-spool")
	}
	if a.Fsync == "" {
		a.Fsync = FsyncInterval
	}
	for i := range a.Sinks {
		if f := a.Sinks[i].File; f != nil {
			if f.MaxSize == 0 {
				f.MaxSize = DefaultAuditMaxSize
			}
			if f.MaxFiles == 0 {
				f.MaxFiles = DefaultAuditMaxFiles
			}
		}
		if h := a.Sinks[i].HTTP; h != nil {
			if h.Batch == 0 {
				h.Batch = DefaultAuditBatch
			}
			setDur(&h.Flush, DefaultAuditFlush)
		}
	}
}

// validateAudit checks the audit block.
func (c *Config) validateAudit(bad func(path, format string, args ...any)) {
	a := c.Audit
	if a == nil {
		return
	}
	if a.MaxPayloadBytes < 0 {
		bad("audit.max_payload_bytes", "must not be negative")
	}
	if a.Buffer < 1 {
		bad("audit.buffer", "must be at least 1")
	}
	switch a.Fsync {
	case FsyncInterval, FsyncBatch, FsyncAlways, FsyncNever:
	default:
		bad("audit.fsync", "want interval, batch, always or never, got %q", a.Fsync)
	}
	for i, p := range a.Redact.Paths {
		if _, err := audit.ParsePath(p); err != nil {
			bad(fmt.Sprintf("audit.redact.paths[%d]", i), "%v", err)
		}
	}
	for i, p := range a.Redact.Patterns {
		if _, err := regexp.Compile(p); err != nil {
			bad(fmt.Sprintf("audit.redact.patterns[%d]", i), "invalid regular expression: %v", err)
		} else if p == "" {
			bad(fmt.Sprintf("audit.redact.patterns[%d]", i), "must not be empty")
		}
	}
	for i, d := range a.Redact.Detectors {
		if !slices.Contains(audit.Detectors, d) {
			bad(fmt.Sprintf("audit.redact.detectors[%d]", i), "unknown detector %q (known: %s)", d, strings.Join(audit.Detectors, ", "))
		}
	}
	if len(a.Sinks) == 0 {
		bad("audit.sinks", "at least one sink is required (file, stdout or http)")
	}
	files := map[string]bool{}
	for i, s := range a.Sinks {
		p := fmt.Sprintf("audit.sinks[%d]", i)
		n := 0
		for _, set := range []bool{s.File != nil, s.Stdout != nil, s.HTTP != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			bad(p, "set exactly one of file, stdout and http")
			continue
		}
		if f := s.File; f != nil {
			switch clean := filepath.Clean(f.Path); {
			case f.Path == "":
				bad(p+".file.path", "required")
			case files[clean]:
				bad(p+".file.path", "another file sink writes %q", f.Path)
			default:
				files[clean] = true
			}
			if f.MaxSize < 4<<10 {
				bad(p+".file.max_size", "must be at least 4KiB")
			}
			if f.MaxFiles < -1 || f.MaxFiles == 1 {
				bad(p+".file.max_files", "want at least 2 (the current file and one rotated), or -1 to keep every file")
			}
		}
		if h := s.HTTP; h != nil {
			u, err := url.Parse(h.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(p+".http.url", "want an http or https URL, got %q", h.URL)
			}
			if h.Batch < 1 {
				bad(p+".http.batch", "must be at least 1")
			}
			for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
				v := h.Headers[k]
				switch {
				case !core.ValidHeaderName(k):
					bad(p+".http.headers."+k, "%q is not a valid header name", k)
				case !core.ValidHeaderValue(v.Reveal()):
					bad(p+".http.headers."+k, "value holds characters a header cannot carry")
				case strings.EqualFold(k, "content-type") || strings.EqualFold(k, "content-length") || strings.EqualFold(k, "host"):
					bad(p+".http.headers."+k, "managed by mcpgate; cannot be set")
				}
			}
		}
	}
}
