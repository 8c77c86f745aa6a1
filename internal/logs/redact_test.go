package logs

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestRedaction: the message, string values, errors, groups, structured
// values and the attributes given with With are all cleaned, in the
// levels handler and around any other handler; unset, nothing changes.
func TestRedaction(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value"
	fn := func(s string) string { return strings.ReplaceAll(s, secret, "[REDACTED]") }
	emit := func(log *slog.Logger) {
		l := log.With("component", "upstream", "header", "X-Key: "+secret)
		l.Info("failed with "+secret, "error", errors.New("bad "+secret), "g", slog.GroupValue(slog.String("k", secret)),
			"m", map[string]string{"v": secret}, "n", 3)
	}
	var buf bytes.Buffer
	log, lv := New(&buf, "json", nil, nil, []string{"upstream"})
	emit(log)
	if !strings.Contains(buf.String(), secret) {
		t.Fatalf("unset redaction changed the line: %s", buf.String())
	}
	lv.Redaction().Set(fn)
	var plain bytes.Buffer
	red := new(Redaction)
	red.Set(fn)
	for name, c := range map[string]struct {
		log *slog.Logger
		buf *bytes.Buffer
	}{"levels": {log, &buf}, "wrapped": {slog.New(RedactHandler(slog.NewTextHandler(&plain, nil), red)), &plain}} {
		c.buf.Reset()
		emit(c.log)
		out := c.buf.String()
		if strings.Contains(out, secret) || strings.Count(out, "[REDACTED]") != 5 || !strings.Contains(out, "3") {
			t.Errorf("%s: %s", name, out)
		}
	}
	lv.Redaction().Set(nil)
	buf.Reset()
	emit(log)
	if !strings.Contains(buf.String(), secret) {
		t.Errorf("redaction off: %s", buf.String())
	}
}
