package limits

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Snapshots let a limiter's state outlive the process: the gateway saves
// them in its embedded store while it runs and at shutdown, and restores
// them before it serves again, so that a restart does not hand every
// client a fresh budget.
//
// Both formats are a four-byte header (a three-letter tag and a version)
// followed by one record per key, in no particular order. Times are Unix
// nanoseconds on the wall clock, since the monotonic readings the limiters
// otherwise keep mean nothing to another process:
//
//	window  record: uvarint len(key), key, uvarint n (1..), varint the
//	                oldest admission, then n-1 uvarint gaps to the next
//	buckets record: uvarint len(key), key, varint the key's latest event,
//	                8 bytes big-endian float64 tokens held at that event
//
// A restored Window keeps at most limit admissions per key (the newest)
// and a restored bucket at most burst tokens, so state saved under other
// settings is read as strictly as the new ones allow. A wall-clock step
// between saving and restoring shifts the restored times by as much, but
// never to after the restore: saved times later than the limiter's
// creation are taken as made then, so that a clock stepped back cannot
// lock a key out for longer than a window (or a bucket's refill).

var (
	windowMagic  = [4]byte{'M', 'G', 'W', 1}
	bucketsMagic = [4]byte{'M', 'G', 'B', 1}
)

// ErrCorruptSnapshot is returned by UnmarshalBinary for data that is not
// a snapshot of this kind of limiter.
var ErrCorruptSnapshot = errors.New("limits: corrupt snapshot")

// Version returns a count of the changes to w's state (admissions and
// undos; dropping expired keys is not a change). A saver compares it with
// the count it last saved to skip saving a state it already has. Version
// of a nil Window is 0.
func (w *Window) Version() uint64 {
	if w == nil {
		return 0
	}
	return w.t.version()
}

// MarshalBinary encodes every key's admissions (see the package's
// snapshot format). Shards are encoded one at a time, each under its
// lock, so Admit calls go on meanwhile; an admission made during the
// encoding may or may not be in it. A nil Window encodes as nil.
func (w *Window) MarshalBinary() ([]byte, error) {
	return w.AppendBinary(nil)
}

// AppendBinary is MarshalBinary appending to b.
func (w *Window) AppendBinary(b []byte) ([]byte, error) {
	if w == nil {
		return b, nil
	}
	base := w.t.base.UnixNano()
	b = append(b, windowMagic[:]...)
	for i := range w.t.shards {
		s := &w.t.shards[i]
		s.mu.Lock()
		for k, r := range s.m {
			if r.n == 0 {
				continue
			}
			b = binary.AppendUvarint(b, uint64(len(k)))
			b = append(b, k...)
			b = binary.AppendUvarint(b, uint64(r.n))
			j := r.head
			prev := r.t[j]
			b = binary.AppendVarint(b, base+prev)
			for range r.n - 1 {
				if j++; j == len(r.t) {
					j = 0
				}
				b = binary.AppendUvarint(b, uint64(r.t[j]-prev))
				prev = r.t[j]
			}
		}
		s.mu.Unlock()
	}
	return b, nil
}

// UnmarshalBinary replaces w's state with the one data encodes. It is
// meant for a Window that is not in use yet (restoring before serving):
// Admit calls made meanwhile may be lost. Keys beyond MaxKeys are dropped;
// so are admissions beyond the limit (the oldest go). If data is corrupt
// it returns an error wrapping [ErrCorruptSnapshot] and leaves w as it
// was. Unmarshalling into a nil Window (a limit switched off) does
// nothing.
func (w *Window) UnmarshalBinary(data []byte) error {
	if w == nil {
		return nil
	}
	type entry struct {
		key   string
		times []int64
	}
	var entries []entry
	err := decodeRecords(data, windowMagic, func(key string, d *decoder) error {
		n, err := d.uvarint()
		if err != nil {
			return err
		}
		// Each admission takes at least one byte: a count beyond what is
		// left is corrupt, and must not size an allocation.
		if n == 0 || n > uint64(d.left()) {
			return fmt.Errorf("admission count %d", n)
		}
		first, err := d.varint()
		if err != nil {
			return err
		}
		times := make([]int64, n)
		times[0] = first
		for i := 1; i < len(times); i++ {
			gap, err := d.uvarint()
			if err != nil {
				return err
			}
			if gap > math.MaxInt64 || times[i-1] > math.MaxInt64-int64(gap) {
				return fmt.Errorf("admission time overflows")
			}
			times[i] = times[i-1] + int64(gap)
		}
		entries = append(entries, entry{key, times})
		return nil
	})
	if err != nil {
		return err
	}
	base := w.t.base.UnixNano()
	w.t.reset()
	for _, e := range entries {
		// Offsets from base, the moment this Window was made. Saved
		// admissions cannot be later than that unless the wall clock
		// stepped back: they are taken as made at base. Those that left
		// the window by base are dropped.
		times := e.times[max(0, len(e.times)-w.limit):]
		r := &ring{t: make([]int64, 0, len(times))}
		for _, at := range times {
			if off := min(sat(at, -base), 0); off > -w.window {
				r.t = append(r.t, off)
			}
		}
		if r.n = len(r.t); r.n > 0 {
			w.t.put(e.key, r)
		}
	}
	return nil
}

// Version returns a count of the changes to b's state (admissions;
// dropping idle keys is not a change). A saver compares it with the count
// it last saved to skip saving a state it already has. Version of a nil
// Buckets is 0.
func (b *Buckets) Version() uint64 {
	if b == nil {
		return 0
	}
	return b.t.version()
}

// MarshalBinary encodes every key's bucket (see the package's snapshot
// format). Shards are encoded one at a time, each under its lock, so
// Admit calls go on meanwhile; an admission made during the encoding may
// or may not be in it. A nil Buckets encodes as nil.
func (b *Buckets) MarshalBinary() ([]byte, error) {
	return b.AppendBinary(nil)
}

// AppendBinary is MarshalBinary appending to p.
func (b *Buckets) AppendBinary(p []byte) ([]byte, error) {
	if b == nil {
		return p, nil
	}
	p = append(p, bucketsMagic[:]...)
	for i := range b.t.shards {
		s := &b.t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			p = binary.AppendUvarint(p, uint64(len(k)))
			p = append(p, k...)
			p = binary.AppendVarint(p, e.last.UnixNano())
			p = binary.BigEndian.AppendUint64(p, math.Float64bits(e.lim.TokensAt(e.last)))
		}
		s.mu.Unlock()
	}
	return p, nil
}

// UnmarshalBinary replaces b's state with the one data encodes. It is
// meant for a Buckets that is not in use yet (restoring before serving):
// Admit calls made meanwhile may be lost. Keys beyond MaxKeys are
// dropped, and no bucket holds more than burst tokens. If data is corrupt
// it returns an error wrapping [ErrCorruptSnapshot] and leaves b as it
// was. Unmarshalling into a nil Buckets (a limit switched off) does
// nothing.
func (b *Buckets) UnmarshalBinary(data []byte) error {
	if b == nil {
		return nil
	}
	type entry struct {
		key    string
		at     int64
		tokens float64
	}
	var entries []entry
	err := decodeRecords(data, bucketsMagic, func(key string, d *decoder) error {
		at, err := d.varint()
		if err != nil {
			return err
		}
		bits, err := d.uint64()
		if err != nil {
			return err
		}
		tokens := math.Float64frombits(bits)
		if !(tokens >= 0) || math.IsInf(tokens, 1) {
			return fmt.Errorf("token count %v", tokens)
		}
		entries = append(entries, entry{key, at, tokens})
		return nil
	})
	if err != nil {
		return err
	}
	b.t.reset()
	for _, e := range entries {
		// A saved event later than this Buckets was made means the wall
		// clock stepped back: it is taken as made then.
		at := time.Unix(0, min(e.at, b.t.base.UnixNano()))
		tokens := min(e.tokens, float64(b.burst))
		bk := b.newBucket()
		// rate.Limiter cannot be given a token count; empty it at the
		// moment from which the rate refills exactly tokens by at.
		empty := at.Add(-time.Duration(math.Round(tokens / float64(b.limit) * float64(time.Second))))
		bk.lim.ReserveN(empty, b.burst)
		bk.last = at
		b.t.put(e.key, bk)
	}
	return nil
}

// reset drops every key.
func (t *table[E]) reset() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		t.keys.Add(-int64(len(s.m)))
		s.m = nil
		s.mu.Unlock()
	}
}

// put sets key's state, unless the table is full (the key is then
// dropped: restoring must not refuse what it cannot keep).
func (t *table[E]) put(key string, e *E) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		if !t.reserve() {
			return
		}
	}
	if s.m == nil {
		s.m = make(map[string]*E)
	}
	s.m[key] = e
}

// sat returns a+b, saturated to the int64 range.
func sat(a, b int64) int64 {
	c := a + b
	switch {
	case b > 0 && c < a:
		return math.MaxInt64
	case b < 0 && c > a:
		return math.MinInt64
	}
	return c
}

// decodeRecords checks data's header and calls rec for each record's key,
// with the decoder positioned after it. A key appearing twice is corrupt.
func decodeRecords(data []byte, magic [4]byte, rec func(key string, d *decoder) error) error {
	if len(data) < len(magic) || [4]byte(data[:4]) != magic {
		return fmt.Errorf("%w: not a %c%c%c version %d snapshot", ErrCorruptSnapshot, magic[0], magic[1], magic[2], magic[3])
	}
	d := &decoder{b: data[4:]}
	seen := make(map[string]struct{})
	for d.left() > 0 {
		n, err := d.uvarint()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
		}
		if n > uint64(d.left()) {
			return fmt.Errorf("%w: key length %d beyond the data", ErrCorruptSnapshot, n)
		}
		key := string(d.b[:n])
		d.b = d.b[n:]
		if _, dup := seen[key]; dup {
			return fmt.Errorf("%w: key %q twice", ErrCorruptSnapshot, key)
		}
		seen[key] = struct{}{}
		if err := rec(key, d); err != nil {
			return fmt.Errorf("%w: key %q: %v", ErrCorruptSnapshot, key, err)
		}
	}
	return nil
}

type decoder struct{ b []byte }

var errTruncated = errors.New("truncated")

func (d *decoder) left() int { return len(d.b) }

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, errTruncated
	}
	d.b = d.b[n:]
	return v, nil
}

func (d *decoder) varint() (int64, error) {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		return 0, errTruncated
	}
	d.b = d.b[n:]
	return v, nil
}

func (d *decoder) uint64() (uint64, error) {
	if len(d.b) < 8 {
		return 0, errTruncated
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v, nil
}
