package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Records are stored as the JSON of store.Record (its tags), which keeps
// the file readable with bbolt's own tools and lets fields be added
// without a migration. Times keep nanoseconds and their UTC offset
// (RFC 3339); InitRaw is exact (base64). Strings are JSON strings: bytes
// that are not UTF-8 become U+FFFD, except in the ID, which is the key.
// A future encoding that is not JSON must start with a byte other than '{'.

func encodeRecord(r *store.Record) ([]byte, error) {
	return json.Marshal(r)
}

var errCorrupt = errors.New("corrupt record")

// decodeRecord decodes the value stored under key; key wins over the
// value's "id".
func decodeRecord(key, v []byte) (*store.Record, error) {
	if len(v) == 0 || v[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", errCorrupt)
	}
	r := new(store.Record)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	r.ID = string(key)
	return r, nil
}

// A flushed touch is 12 bytes: Unix seconds (int64) and nanoseconds
// (uint32), big-endian, so that any time.Time instant round-trips.
const touchLen = 12

func appendTouch(b []byte, at time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(at.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(at.Nanosecond()))
}

func decodeTouch(v []byte) (time.Time, error) {
	if len(v) != touchLen {
		return time.Time{}, fmt.Errorf("touch value is %d bytes, want %d", len(v), touchLen)
	}
	ns := binary.BigEndian.Uint32(v[8:])
	if ns >= 1e9 {
		return time.Time{}, fmt.Errorf("touch nanoseconds %d out of range", ns)
	}
	return time.Unix(int64(binary.BigEndian.Uint64(v)), int64(ns)), nil
}
