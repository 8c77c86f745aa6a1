package logs

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
)

// Redaction is what every log record is cleaned of before it is
// written: a function from a text to the same text with its secrets
// replaced (the configuration's secret values, the audit trail's redaction
// patterns and detectors). It applies to the message and to every string
// value, error text and structured value of the record and of the
// attributes a logger was given with Logger.With. Set changes it at run
// time (a reload); unset, records pass as they are.
type Redaction struct {
	fn atomic.Pointer[func(string) string]
}

// Set makes fn the redaction; nil turns it off.
func (r *Redaction) Set(fn func(string) string) {
	if fn == nil {
		r.fn.Store(nil)
		return
	}
	r.fn.Store(&fn)
}

// String applies the redaction to s.
func (r *Redaction) String(s string) string {
	if r == nil {
		return s
	}
	if fn := r.fn.Load(); fn != nil {
		return (*fn)(s)
	}
	return s
}

func (r *Redaction) load() func(string) string {
	if r == nil {
		return nil
	}
	if fn := r.fn.Load(); fn != nil {
		return *fn
	}
	return nil
}

// Redaction is the redaction of the records of the Levels' handlers.
func (l *Levels) Redaction() *Redaction { return &l.redaction }

// RedactHandler wraps h so that what reaches it has passed r.
func RedactHandler(h slog.Handler, r *Redaction) slog.Handler {
	return &redactHandler{inner: h, r: r}
}

type redactHandler struct {
	inner slog.Handler
	r     *Redaction
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	return h.inner.Handle(ctx, redactRecord(rec, h.r.load()))
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &redactHandler{inner: h.inner.WithAttrs(redactAttrs(attrs, h.r.load())), r: h.r}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{inner: h.inner.WithGroup(name), r: h.r}
}

// redactRecord returns rec with fn applied to its message and attributes;
// rec itself when fn is nil.
func redactRecord(rec slog.Record, fn func(string) string) slog.Record {
	if fn == nil {
		return rec
	}
	out := slog.NewRecord(rec.Time, rec.Level, fn(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a, fn))
		return true
	})
	return out
}

func redactAttrs(attrs []slog.Attr, fn func(string) string) []slog.Attr {
	if fn == nil {
		return attrs
	}
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redactAttr(a, fn)
	}
	return out
}

// redactAttr applies fn to a's value: a string, the text of an error or
// a Stringer, a group's members, any other value's JSON encoding (which
// the value is replaced by only when the redaction changed it).
func redactAttr(a slog.Attr, fn func(string) string) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if r := fn(s); r != s {
			return slog.String(a.Key, r)
		}
		return slog.Attr{Key: a.Key, Value: v}
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, m := range g {
			out[i] = redactAttr(m, fn)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, fn(x.Error()))
		case interface{ String() string }:
			if s := x.String(); fn(s) != s {
				return slog.String(a.Key, fn(s))
			}
		case []byte:
			return slog.String(a.Key, fn(string(x)))
		default:
			b, err := json.Marshal(x)
			if err != nil {
				return slog.Attr{Key: a.Key, Value: v}
			}
			if r := fn(string(b)); r != string(b) {
				return slog.String(a.Key, r)
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
