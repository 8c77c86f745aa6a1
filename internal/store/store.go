package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// ErrNotFound is returned for a record that does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("store: closed")

// Record is a session as persisted. It holds what is needed to continue
// the session after a restart: who it belongs to, how it was negotiated,
// the client's initialize request (to re-establish the upstream side
// lazily), and its bounds.
type Record struct {
	ID              string   `json:"id"`
	Route           string   `json:"route"`
	Era             core.Era `json:"era"`
	ProtocolVersion string   `json:"protocol_version"`
	Principal       string   `json:"principal"`
	Tenant          string   `json:"tenant,omitempty"`
	// Groups and Claims are the rest of the owner's identity (see
	// core.SessionInfo), so that a session brought back from the store
	// belongs to the same principal. Records written before they existed
	// decode with both nil.
	Groups          []string       `json:"groups,omitempty"`
	Claims          map[string]any `json:"claims,omitempty"`
	RemoteAddr      string         `json:"remote_addr,omitempty"`
	ClientName      string         `json:"client_name,omitempty"`
	ClientVersion   string         `json:"client_version,omitempty"`
	InitRaw         []byte         `json:"init_raw,omitempty"`
	UpstreamSession string         `json:"upstream_session,omitempty"`
	// Owner is the replica that holds the session's upstream process (a
	// stdio route in a cluster); empty when any replica may serve it.
	Owner       string        `json:"owner,omitempty"`
	Created     time.Time     `json:"created"`
	LastActive  time.Time     `json:"last_active"`
	IdleTimeout time.Duration `json:"idle_timeout"`
	TTL         time.Duration `json:"ttl,omitempty"`
	// Usage holds per-session counters (requests, tokens, ...), by name.
	Usage map[string]int64 `json:"usage,omitempty"`
	// Overrides holds per-session settings an operator changed, by name.
	Overrides map[string]string `json:"overrides,omitempty"`
}

// Expired reports whether the record is past its idle timeout or TTL at now.
func (r *Record) Expired(now time.Time) bool {
	if r.TTL > 0 && now.Sub(r.Created) > r.TTL {
		return true
	}
	return r.IdleTimeout > 0 && now.Sub(r.LastActive) > r.IdleTimeout
}

// Store keeps session records. Implementations must be safe for use by
// multiple goroutines. Every method honours ctx; writes that must survive a
// cancelled request should be given context.WithoutCancel by the caller.
//
// Durability: Put and Delete are durable when they return (a crash after
// that loses neither); Touch may be buffered by the backend for up to its
// documented flush interval, so a crash loses at most that much activity
// time — never a session.
type Store interface {
	// Put creates or replaces a record.
	Put(ctx context.Context, r *Record) error
	// Get returns a copy of the record with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Record, error)
	// Touch records activity; a record that does not exist is ignored.
	Touch(ctx context.Context, id string, at time.Time) error
	// Delete removes a record; deleting a missing record is not an error.
	Delete(ctx context.Context, id string) error
	// List returns copies of every record, in no particular order.
	List(ctx context.Context) ([]*Record, error)
	// Add adds delta to a named counter and returns its new value; a
	// counter that does not exist starts at zero.
	Add(ctx context.Context, counter string, delta int64) (int64, error)
	// Close flushes buffered writes and releases the store.
	Close() error
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	c := *r
	c.InitRaw = append([]byte(nil), r.InitRaw...)
	if r.Groups != nil {
		c.Groups = append([]string(nil), r.Groups...)
	}
	if r.Claims != nil {
		c.Claims = CloneClaims(r.Claims)
	}
	if r.Usage != nil {
		c.Usage = make(map[string]int64, len(r.Usage))
		for k, v := range r.Usage {
			c.Usage[k] = v
		}
	}
	if r.Overrides != nil {
		c.Overrides = make(map[string]string, len(r.Overrides))
		for k, v := range r.Overrides {
			c.Overrides[k] = v
		}
	}
	return &c
}

// Event tells the replicas sharing a store about a change one of them made.
type Event struct {
	// Kind is "ended" (the session was ended for good: DELETE, eviction,
	// expiry, revocation) or "answer" (a client's answer to a server
	// request reached a replica that is not waiting for it; Data is the
	// JSON-RPC response, for the replica that is).
	Kind      string `json:"kind"`
	SessionID string `json:"session_id"`
	Reason    string `json:"reason,omitempty"`
	// Origin is the replica that made the change, so it can ignore its own.
	Origin string          `json:"origin"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Owners is implemented by stores shared between replicas that keep track
// of which replica holds a session's process, so that the others forward
// its requests there and take it over when that replica is gone. Safe for
// use by multiple goroutines.
type Owners interface {
	// Announce says replica is alive and reachable at addr, for ttl.
	// Replicas repeat it well within ttl.
	Announce(ctx context.Context, replica, addr string, ttl time.Duration) error
	// Retire says replica is gone (a clean shutdown), at once.
	Retire(ctx context.Context, replica string) error
	// Replica returns the address replica announced, or ErrNotFound once
	// its announcement has lapsed.
	Replica(ctx context.Context, replica string) (addr string, err error)
	// Claim makes to the owner of session id if from owns it now, and
	// reports whether it did; ErrNotFound if there is no such session.
	Claim(ctx context.Context, id, from, to string) (bool, error)
}

// Broadcaster is implemented by stores shared between gateway replicas.
// Publish must reach every subscriber that is connected when it returns;
// Subscribe calls fn for each event (its own included) until ctx ends,
// reconnecting after errors. Safe for use by multiple goroutines.
type Broadcaster interface {
	Publish(ctx context.Context, ev Event) error
	Subscribe(ctx context.Context, fn func(Event)) error
}

// CloneClaims returns a deep copy of claims, whose values are JSON values
// (maps, slices and scalars, as encoding/json decodes them).
func CloneClaims(claims map[string]any) map[string]any {
	if claims == nil {
		return nil
	}
	c := make(map[string]any, len(claims))
	for k, v := range claims {
		c[k] = cloneJSON(v)
	}
	return c
}

func cloneJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return CloneClaims(v)
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = cloneJSON(e)
		}
		return c
	case []string:
		return append([]string(nil), v...)
	}
	return v
}
