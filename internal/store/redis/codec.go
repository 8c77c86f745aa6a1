package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// A session is one hash, <prefix>session:<id>:
//
//	record    the JSON of store.Record (its tags), as of the last Put
//	idle      IdleTimeout in milliseconds, "0" for none
//	deadline  Created+TTL in Unix milliseconds, "" for no TTL
//	ts, tn    the latest Touch flushed since that Put: Unix seconds and
//	          nanoseconds, absent until the first flush
//
// idle and deadline are copies the touch script reads to refresh the key's
// TTL without decoding JSON in Lua. Reads take the later of the record's
// LastActive and ts/tn. JSON keeps times to the nanosecond with their UTC
// offset (RFC 3339) and InitRaw exactly (base64); strings that are not
// UTF-8 become U+FFFD, except the ID, which is taken from the key. A future
// encoding that is not JSON must start with a byte other than '{'.

const (
	fieldRecord   = "record"
	fieldIdle     = "idle"
	fieldDeadline = "deadline"
	fieldTouchSec = "ts"
	fieldTouchNs  = "tn"
	// fieldOwner is the replica holding the session's process; Claim
	// changes it without rewriting the record, and reads prefer it to
	// the record's Owner.
	fieldOwner = "owner"
)

func encodeRecord(r *store.Record) ([]byte, error) {
	return json.Marshal(r)
}

var errCorrupt = errors.New("corrupt record")

// decodeRecord decodes the record stored for id; id wins over the value's
// "id".
func decodeRecord(id string, v []byte) (*store.Record, error) {
	if len(v) == 0 || v[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", errCorrupt)
	}
	r := new(store.Record)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	r.ID = id
	return r, nil
}

// idleMillis is d in whole milliseconds, rounded up so that a positive
// timeout never reads as none.
func idleMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// deadlineMillis is the end of r's absolute TTL in Unix milliseconds, or ""
// if it has none.
func deadlineMillis(r *store.Record) string {
	if r.TTL <= 0 {
		return ""
	}
	return strconv.FormatInt(r.Created.Add(r.TTL).UnixMilli(), 10)
}

// touchArgs are the ts and tn values of at.
func touchArgs(at time.Time) (sec, nsec int64) {
	return at.Unix(), int64(at.Nanosecond())
}

// decodeTouch parses flushed ts and tn values.
func decodeTouch(ts, tn string) (time.Time, error) {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("touch seconds %q: %w", ts, err)
	}
	ns, err := strconv.ParseInt(tn, 10, 64)
	if err != nil || ns < 0 || ns >= 1e9 {
		return time.Time{}, fmt.Errorf("touch nanoseconds %q out of range", tn)
	}
	return time.Unix(sec, ns), nil
}
