package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Health configures a route's upstream health checks (routes[].health).
// Without it the route is not checked, and counts as up.
type Health struct {
	// Interval is the time between two checks while the upstream is up;
	// while it is down, checks back off, doubling up to 8 intervals.
	// Default 15s. A stdio route spawns a process per check: never more
	// often than this.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one check. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// FailureThreshold is how many checks in a row must fail for an up
	// upstream to count as down. Default 3.
	FailureThreshold int `yaml:"failure_threshold"`
	// SuccessThreshold is how many checks in a row must succeed for a
	// down upstream to count as up again. Default 1.
	SuccessThreshold int `yaml:"success_threshold"`
}

// Defaults of routes[].health.
const (
	DefaultHealthInterval         = 15 * time.Second
	DefaultHealthTimeout          = 5 * time.Second
	DefaultHealthFailureThreshold = 3
	DefaultHealthSuccessThreshold = 1
)

func (h *Health) setDefaults() {
	setDur(&h.Interval, DefaultHealthInterval)
	setDur(&h.Timeout, DefaultHealthTimeout)
	if h.FailureThreshold == 0 {
		h.FailureThreshold = DefaultHealthFailureThreshold
	}
	if h.SuccessThreshold == 0 {
		h.SuccessThreshold = DefaultHealthSuccessThreshold
	}
}

func (h *Health) validate(p string, bad func(path, format string, args ...any)) {
	if h.Interval < 100*time.Millisecond {
		bad(p+".interval", "must be at least 100ms, got %s", h.Interval)
	}
	if h.Timeout <= 0 {
		bad(p+".timeout", "must be positive")
	}
	if h.FailureThreshold < 1 {
		bad(p+".failure_threshold", "must be at least 1")
	}
	if h.SuccessThreshold < 1 {
		bad(p+".success_threshold", "must be at least 1")
	}
}

// Values of admin.ready_requires.
const (
	ReadyRequiresAny = "any" // ready while at least one route is up
	ReadyRequiresAll = "all" // ready only while every route is up
)

// Components are the names log.levels accepts: the parts of the gateway
// whose loggers carry a component attribute.
var Components = []string{"frontend", "session", "upstream", "pipeline", "policy", "quota", "auth", "audit", "store", "health", "admin", "telemetry"}

func (c *Config) validateObservability(bad func(path, format string, args ...any)) {
	switch c.Admin.ReadyRequires {
	case "", ReadyRequiresAny, ReadyRequiresAll:
	default:
		bad("admin.ready_requires", "want any or all, got %q", c.Admin.ReadyRequires)
	}
	for comp, lv := range c.Log.Levels {
		p := fmt.Sprintf("log.levels.%s", comp)
		if !slices.Contains(Components, comp) {
			bad(p, "unknown component %q (known: %s)", comp, strings.Join(Components, ", "))
		}
		switch strings.ToLower(lv) {
		case "debug", "info", "warn", "error":
		default:
			bad(p, "want debug, info, warn or error, got %q", lv)
		}
	}
	for i, r := range c.Routes {
		if r.Health != nil {
			r.Health.validate(fmt.Sprintf("routes[%d].health", i), bad)
		}
	}
}
