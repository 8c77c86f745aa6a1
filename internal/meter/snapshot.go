package meter

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Snapshots carry a Local meter's budgets across a restart: what was
// counted, not what was in flight (gauges start at zero). Slots are
// numbered on the wall clock, so another process reads them as they were
// meant, and what left the window while nothing ran is dropped on the
// first use.

type snapshot struct {
	Version  int                    `json:"version"`
	Window   time.Duration          `json:"window"`
	Counters []string               `json:"counters"`
	Keys     map[string]keySnapshot `json:"keys"`
}

type keySnapshot struct {
	Cur    int64   `json:"cur"`
	Used   int64   `json:"used,omitempty"` // Unix ns of the last change
	Totals []int64 `json:"totals"`
	Slots  []int64 `json:"slots,omitempty"`
}

func (l *Local) names() []string {
	out := make([]string, len(l.spec.Counters))
	for i, c := range l.spec.Counters {
		out[i] = c.Name
	}
	return out
}

// Version changes whenever a budget does, so that a saver writes a
// snapshot only when there is something new.
func (l *Local) Version() uint64 { return l.version.Load() }

// MarshalBinary is a snapshot of every budget that holds something.
func (l *Local) MarshalBinary() ([]byte, error) {
	s := snapshot{Version: 1, Window: l.spec.Window, Counters: l.names(), Keys: map[string]keySnapshot{}}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, c := range sh.keys {
			c.mu.Lock()
			ks := keySnapshot{Cur: c.cur, Totals: slices.Clone(c.total), Slots: slices.Clone(c.slots)}
			if !c.used.IsZero() {
				ks.Used = c.used.UnixNano()
			}
			c.mu.Unlock()
			for j, ctr := range l.spec.Counters {
				if ctr.Gauge {
					ks.Totals[j] = 0
				}
			}
			if slices.ContainsFunc(ks.Totals, func(n int64) bool { return n != 0 }) {
				s.Keys[k] = ks
			}
		}
		sh.mu.Unlock()
	}
	return json.Marshal(s)
}

// UnmarshalBinary restores a snapshot into an empty meter of the same
// spec (window and counters); a snapshot of another spec is an error and
// restores nothing: a changed limit starts afresh.
func (l *Local) UnmarshalBinary(data []byte) error {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("meter: snapshot: %w", err)
	}
	if s.Version != 1 || s.Window != l.spec.Window || !slices.Equal(s.Counters, l.names()) {
		return fmt.Errorf("meter: snapshot of another budget (window %v, counters %v)", s.Window, s.Counters)
	}
	n := len(l.spec.Counters)
	for k, ks := range s.Keys {
		want := 0
		if l.spec.width() > 0 {
			want = n * (Slots + 1)
		}
		if len(ks.Totals) != n || len(ks.Slots) != want || ks.Cur < 0 {
			return fmt.Errorf("meter: snapshot: key %q has %d counters and %d slots", k, len(ks.Totals), len(ks.Slots))
		}
	}
	for k, ks := range s.Keys {
		c := NewCounters(&l.spec)
		c.cur = ks.Cur
		if ks.Used > 0 {
			c.used = time.Unix(0, ks.Used)
		}
		copy(c.total, ks.Totals)
		copy(c.slots, ks.Slots)
		sh := &l.shards[l.shardOf(k)]
		sh.mu.Lock()
		if _, ok := sh.keys[k]; !ok && l.n.Load() < int64(l.maxKeys) {
			sh.keys[k] = c
			l.n.Add(1)
		}
		sh.mu.Unlock()
	}
	l.version.Add(1)
	return nil
}

// CarryFrom takes over the usage old counted, counter by counter of the
// same name (and kind), when both count in the same window: a budget whose
// limits changed (a reload) goes on from what was used, under its new
// limits. Gauges are carried too: what is in flight is settled here.
func (c *Counters) CarryFrom(old *Counters) {
	if old == nil || old.spec.Window != c.spec.Window {
		return
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.used = old.cur, old.used
	for i, ctr := range c.spec.Counters {
		for j, o := range old.spec.Counters {
			if o.Name != ctr.Name || o.Gauge != ctr.Gauge {
				continue
			}
			c.total[i] = old.total[j]
			if c.width > 0 {
				copy(c.slots[i*(Slots+1):(i+1)*(Slots+1)], old.slots[j*(Slots+1):(j+1)*(Slots+1)])
			}
		}
	}
}

// CarryFrom takes over every key's usage of old (see Counters.CarryFrom).
func (l *Local) CarryFrom(old *Local) {
	if old == nil || old.spec.Window != l.spec.Window {
		return
	}
	for i := range old.shards {
		sh := &old.shards[i]
		sh.mu.Lock()
		for k, oc := range sh.keys {
			c := NewCounters(&l.spec)
			c.CarryFrom(oc)
			dst := &l.shards[l.shardOf(k)]
			dst.mu.Lock()
			if _, ok := dst.keys[k]; !ok {
				dst.keys[k] = c
				l.n.Add(1)
			}
			dst.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	l.version.Add(1)
}
