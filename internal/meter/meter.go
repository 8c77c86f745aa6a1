package meter

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// Slots is how many slots a rolling window is kept in.
const Slots = 20

// MaxCharges is how many charges one reservation holds.
const MaxCharges = 8

// Counter is one counted quantity of a budget.
type Counter struct {
	// Name is the counter's name in refusals, usage and store keys
	// ("requests", "tool_calls", "tool:search", "result_bytes").
	Name string
	// Limit is the most the window may hold (for a gauge: at once).
	Limit int64
	// Gauge marks a count of things held until settled (requests in
	// flight) rather than an amount counted in the window.
	Gauge bool
}

// Spec is one budget: its counters and its window.
type Spec struct {
	// Window is the rolling window; 0 counts for ever.
	Window time.Duration
	// Counters are indexed by Charge.Counter.
	Counters []Counter
	// Lease bounds how long a shared meter holds a gauge of a replica
	// that never settles it (it died): the longest a request may run.
	// Default 10 minutes.
	Lease time.Duration
	// Expire bounds how long a shared meter keeps a key of a budget
	// without a window after its last change (the longest its key, such
	// as a session, may live). 0: for ever.
	Expire time.Duration
}

func (s *Spec) width() time.Duration {
	if s.Window <= 0 {
		return 0
	}
	return max(s.Window/Slots, time.Millisecond)
}

func (s *Spec) lease() time.Duration {
	if s.Lease > 0 {
		return s.Lease
	}
	return 10 * time.Minute
}

// Charge is one counter a reservation charges.
type Charge struct {
	// Counter is the index in Spec.Counters.
	Counter int
	// Amount is the estimate (a gauge takes one whatever it says).
	Amount int64
	// Clamp reserves at most what is left, and admits the charge while
	// anything is: an estimate that must not refuse by itself.
	Clamp bool
}

// Reservation is what Reserve took; Settle gives it its final amounts.
// It is a value: keep it where the work is (it does not allocate).
type Reservation struct {
	key   string
	slot  int64
	n     int
	c     [MaxCharges]Charge
	held  [MaxCharges]int64
	lease uint64 // the gauges' lease id, for a shared meter
	done  bool   // settled
	// Actual is each charge's final amount, by position in the charges
	// given to Reserve; it starts as what was held, so that a charge whose
	// estimate was exact needs nothing. Set it before Settle.
	Actual [MaxCharges]int64
	// Used is each charge's counter usage after Reserve, and after Settle.
	Used [MaxCharges]int64
}

// Len is the number of charges.
func (r *Reservation) Len() int { return r.n }

// Settled reports whether Settle ran (or a meter gave up settling it).
func (r *Reservation) Settled() bool { return r.done }

// Held is what the i-th charge holds (an estimate may be clamped).
func (r *Reservation) Held(i int) int64 { return r.held[i] }

// Charge is the i-th charge as given.
func (r *Reservation) Charge(i int) Charge { return r.c[i] }

// Refusal is the error of a charge that does not fit.
type Refusal struct {
	// Index is the charge's position; Counter its counter's name.
	Index   int
	Counter string
	Limit   int64
	// Used is the counter's usage: for a refused amount, what it would
	// have been with the charge.
	Used int64
	// ResetIn is how long until enough usage has left the window for the
	// charge to fit; 0 when time does not free it (no window, a gauge).
	ResetIn time.Duration
}

func (r *Refusal) Error() string {
	s := "meter: " + r.Counter + " over its limit of " + strconv.FormatInt(r.Limit, 10) +
		" (usage " + strconv.FormatInt(r.Used, 10) + ")"
	if r.ResetIn > 0 {
		s += ", fits again in " + r.ResetIn.String()
	}
	return s
}

// Refused reports whether err is a Refusal, as opposed to a meter that
// could not decide (a shared store that cannot be reached).
func Refused(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

// ErrTooManyKeys refuses a new key of a Local meter that tracks its most.
var ErrTooManyKeys = errors.New("meter: too many keys")

// ErrTooManyCharges refuses a reservation of more than MaxCharges.
var ErrTooManyCharges = errors.New("meter: too many charges")

// Meter is a budget per key. Reserve takes every charge or none; Settle
// settles a reservation once (a second Settle does nothing). A refusal is
// a *Refusal; any other error means the meter could not decide and took
// nothing.
type Meter interface {
	Reserve(ctx context.Context, key string, charges []Charge, now time.Time) (Reservation, error)
	Settle(ctx context.Context, r *Reservation, now time.Time) error
}

// Counters is one key's budget in memory. The zero value is not usable:
// make one with NewCounters. Safe for concurrent use; it never allocates
// after NewCounters.
type Counters struct {
	spec  *Spec
	width int64 // slot width ns; 0: no window
	mu    sync.Mutex
	cur   int64 // the newest slot advanced to
	slots []int64
	total []int64 // per counter: the sum of its slots, or the gauge held
	used  time.Time
}

var _ Meter = (*Counters)(nil)

// NewCounters makes the budget of one key.
func NewCounters(spec *Spec) *Counters {
	c := &Counters{spec: spec, width: int64(spec.width()), total: make([]int64, len(spec.Counters))}
	if c.width > 0 {
		c.slots = make([]int64, len(spec.Counters)*(Slots+1))
	}
	return c
}

func (c *Counters) slotOf(now time.Time) int64 {
	if c.width == 0 {
		return 0
	}
	return now.UnixNano() / c.width
}

// advance drops the slots that left the window by slot s (under mu).
func (c *Counters) advance(s int64) {
	if c.width == 0 || s <= c.cur {
		return
	}
	steps := min(s-c.cur, Slots+1)
	for i := range c.spec.Counters {
		if c.spec.Counters[i].Gauge {
			continue
		}
		ring := c.slots[i*(Slots+1) : (i+1)*(Slots+1)]
		for k := int64(1); k <= steps; k++ {
			p := (c.cur + k) % (Slots + 1)
			c.total[i] -= ring[p]
			ring[p] = 0
		}
	}
	c.cur = s
}

// add counts n in slot s of counter i (under mu; s within the window).
func (c *Counters) add(i int, s, n int64) {
	c.total[i] += n
	if c.width > 0 {
		c.slots[i*(Slots+1)+int(s%(Slots+1))] += n
	}
}

// resetIn is how long from now until need of counter i has left the
// window (under mu); 0 if it never does.
func (c *Counters) resetIn(i int, need int64, now time.Time) time.Duration {
	if c.width == 0 || need <= 0 {
		return 0
	}
	ring := c.slots[i*(Slots+1) : (i+1)*(Slots+1)]
	var freed int64
	for s := c.cur - Slots; s <= c.cur; s++ {
		freed += ring[s%(Slots+1)]
		if freed >= need {
			// Slot s is counted until slot s+Slots+1 begins.
			at := (s + Slots + 1) * c.width
			return max(time.Duration(at-now.UnixNano()), time.Millisecond)
		}
	}
	return 0
}

// Reserve takes every charge or none; key is ignored (Counters is one
// key's budget).
func (c *Counters) Reserve(_ context.Context, key string, charges []Charge, now time.Time) (Reservation, error) {
	r := Reservation{key: key}
	if len(charges) > MaxCharges {
		return r, ErrTooManyCharges
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.slotOf(now)
	c.advance(s)
	c.used = now
	r.slot, r.n = s, len(charges)
	copy(r.c[:], charges)
	for k, ch := range charges {
		ctr := &c.spec.Counters[ch.Counter]
		used := c.total[ch.Counter]
		amt := ch.Amount
		switch {
		case ctr.Gauge:
			amt = 1
			if used+1 > ctr.Limit {
				return r, &Refusal{Index: k, Counter: ctr.Name, Limit: ctr.Limit, Used: used}
			}
		case ch.Clamp:
			if used >= ctr.Limit {
				return r, &Refusal{Index: k, Counter: ctr.Name, Limit: ctr.Limit, Used: used,
					ResetIn: c.resetIn(ch.Counter, used-ctr.Limit+1, now)}
			}
			amt = max(0, min(amt, ctr.Limit-used))
		default:
			if used+amt > ctr.Limit {
				return r, &Refusal{Index: k, Counter: ctr.Name, Limit: ctr.Limit, Used: used + amt,
					ResetIn: c.resetIn(ch.Counter, used+amt-ctr.Limit, now)}
			}
		}
		r.held[k] = amt
	}
	for k, ch := range charges {
		c.add(ch.Counter, s, r.held[k])
		r.Actual[k] = r.held[k]
		r.Used[k] = c.total[ch.Counter]
	}
	return r, nil
}

// Settle replaces each charge's held estimate by its Actual amount and
// gives gauges back. An actual amount above what was held that no longer
// fits is refused: nothing of that charge stays counted, the other charges
// are settled, and the first such refusal is returned.
func (c *Counters) Settle(_ context.Context, r *Reservation, now time.Time) error {
	if r.n == 0 || r.done {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.slotOf(now)
	c.advance(s)
	c.used = now
	live := c.width == 0 || r.slot > s-Slots-1 // the reservation's slot is still counted
	var refusal *Refusal
	for k := range r.n {
		ch := r.c[k]
		ctr := &c.spec.Counters[ch.Counter]
		held, actual := r.held[k], r.Actual[k]
		switch {
		case ctr.Gauge:
			c.total[ch.Counter] -= held
		case actual == held:
		case actual < held:
			if live {
				c.add(ch.Counter, r.slot, actual-held)
			}
		default:
			delta := actual - held
			if used := c.total[ch.Counter]; used+delta > ctr.Limit {
				if live {
					c.add(ch.Counter, r.slot, -held)
				}
				if refusal == nil {
					refusal = &Refusal{Index: k, Counter: ctr.Name, Limit: ctr.Limit, Used: used + delta,
						ResetIn: c.resetIn(ch.Counter, used+delta-ctr.Limit, now)}
				}
			} else {
				c.add(ch.Counter, s, delta)
			}
		}
		r.Used[k] = c.total[ch.Counter]
	}
	r.done = true // settled once
	if refusal != nil {
		return refusal
	}
	return nil
}

// Usage is counter i's usage at now.
func (c *Counters) Usage(i int, now time.Time) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(c.slotOf(now))
	return c.total[i]
}

// ResetIn is how long from now until the oldest unit counter i counts
// leaves the window: when its usage first drops. 0 when it never does
// (no window, a gauge, nothing counted).
func (c *Counters) ResetIn(i int, now time.Time) time.Duration {
	if c.spec.Counters[i].Gauge {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(c.slotOf(now))
	return c.resetIn(i, 1, now)
}

// idle reports whether the budget holds nothing at now, or was last used
// longer than Spec.Expire ago (Local calls it with the shard locked, and
// takes c.mu).
func (c *Counters) idle(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.spec.Expire; e > 0 && !c.used.IsZero() && now.Sub(c.used) > e {
		return true // what it stood for is gone (a session past its TTL)
	}
	c.advance(c.slotOf(now))
	for _, t := range c.total {
		if t != 0 {
			return false
		}
	}
	return true
}
