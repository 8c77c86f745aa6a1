// Package logs gives mcpgate's structured log a level per component: a
// slog.Handler that reads the "component" attribute a logger was given
// with Logger.With ("frontend", "upstream", "session", ...) and lets a
// record through when it reaches that component's level, or the global
// level when the component has none of its own. Levels change at run
// time (the admin server's log_level_set) without a lock on the logging
// path.
//
//	lv := new(slog.LevelVar)                                 // the global level
//	levels := logs.NewLevels(lv, "frontend", "upstream")     // the components that may have their own
//	_ = levels.Set("frontend", slog.LevelDebug)
//	log := slog.New(levels.Handler(slog.NewJSONHandler(os.Stderr, nil)))
//	log.With("component", "frontend").Debug("written")
//	log.With("component", "upstream").Debug("dropped")        // the global level: info
package logs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
)

// Key is the attribute that names a logger's component.
const Key = "component"

// Levels are the global level and the levels of components.
type Levels struct {
	global *slog.LevelVar
	// comps is fixed at NewLevels, so reads need no lock.
	comps map[string]*compLevel
	// redaction cleans every record its handlers pass on.
	redaction Redaction
}

type compLevel struct {
	set   atomic.Bool
	level slog.LevelVar
}

// NewLevels makes the levels of components, each following global until
// Set.
func NewLevels(global *slog.LevelVar, components ...string) *Levels {
	if global == nil {
		global = new(slog.LevelVar)
	}
	l := &Levels{global: global, comps: make(map[string]*compLevel, len(components))}
	for _, c := range components {
		l.comps[c] = &compLevel{}
	}
	return l
}

// Global is the level of components without one of their own.
func (l *Levels) Global() *slog.LevelVar { return l.global }

// Set gives component a level of its own; an unknown component is an
// error.
func (l *Levels) Set(component string, level slog.Level) error {
	c, ok := l.comps[component]
	if !ok {
		return fmt.Errorf("unknown component %q (known: %s)", component, strings.Join(l.Components(), ", "))
	}
	c.level.Set(level)
	c.set.Store(true)
	return nil
}

// Reset makes component follow the global level again.
func (l *Levels) Reset(component string) {
	if c, ok := l.comps[component]; ok {
		c.set.Store(false)
	}
}

// Level reports component's level, and whether it is its own (false: the
// global level).
func (l *Levels) Level(component string) (slog.Level, bool) {
	if c, ok := l.comps[component]; ok && c.set.Load() {
		return c.level.Level(), true
	}
	return l.global.Level(), false
}

// Components lists the components that may have a level, sorted.
func (l *Levels) Components() []string {
	out := make([]string, 0, len(l.comps))
	for c := range l.comps {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Handler wraps h: records pass to it when they reach their component's
// level. h should let every level through (its own level is not
// consulted beyond that).
func (l *Levels) Handler(h slog.Handler) slog.Handler {
	return &handler{levels: l, inner: h}
}

type handler struct {
	levels *Levels
	inner  slog.Handler
	comp   *compLevel // nil: no component, or one without a level
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	min := h.levels.global.Level()
	if c := h.comp; c != nil && c.set.Load() {
		min = c.level.Level()
	}
	return level >= min && h.inner.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, redactRecord(r, h.levels.redaction.load()))
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &handler{levels: h.levels, inner: h.inner.WithAttrs(redactAttrs(attrs, h.levels.redaction.load())), comp: h.comp}
	if i := slices.IndexFunc(attrs, func(a slog.Attr) bool { return a.Key == Key }); i >= 0 {
		// The last one given wins, as it would for a reader of the line.
		for j := len(attrs) - 1; j >= i; j-- {
			if attrs[j].Key == Key {
				n.comp = h.levels.comps[attrs[j].Value.String()]
				break
			}
		}
	}
	return n
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{levels: h.levels, inner: h.inner.WithGroup(name), comp: h.comp}
}

// LevelsOf returns the Levels behind a handler made by Levels.Handler, or
// nil for any other handler.
func LevelsOf(h slog.Handler) *Levels {
	if lh, ok := h.(*handler); ok {
		return lh.levels
	}
	return nil
}

// New makes the gateway's logger: JSON (or text, for format "text")
// records on w, at global's level, except for the components given a
// level of their own in levels (component name → level name; names that
// do not parse are ignored, configuration validation refuses them).
// Durations are written as Go writes them ("1.5s"), in both formats.
func New(w io.Writer, format string, global *slog.LevelVar, levels map[string]string, components []string) (*slog.Logger, *Levels) {
	ls := NewLevels(global, components...)
	for comp, lv := range levels {
		var l slog.Level
		if l.UnmarshalText([]byte(lv)) == nil {
			_ = ls.Set(comp, l)
		}
	}
	// The inner handler lets everything through: the levels decide.
	opts := &slog.HandlerOptions{Level: slog.Level(-8), ReplaceAttr: durationString}
	if format == "text" {
		return slog.New(ls.Handler(slog.NewTextHandler(w, opts))), ls
	}
	return slog.New(ls.Handler(slog.NewJSONHandler(w, opts))), ls
}

// durationString writes durations as the text handler and the
// configuration file do ("1.5s", "30m0s"), not as the JSON handler's
// integer nanoseconds, which read as a count of nothing in particular.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
