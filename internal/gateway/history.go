package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// ConfigVersion is one configuration the gateway put in force.
type ConfigVersion struct {
	// Version numbers versions from 1, in the order they were applied.
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	// Who applied it: an operator's principal, or "file", "signal",
	// "start".
	Who string `json:"who"`
	// Source is how: start, file, signal, admin, rollback.
	Source string `json:"source"`
	// RollbackOf is the version a rollback restored.
	RollbackOf int `json:"rollback_of,omitempty"`
	// Changes summarises what changed from the version before.
	Changes []string `json:"changes"`
	// Text is the configuration as written, every secret's value
	// replaced by config.Redacted.
	Text string `json:"text"`
}

// historyState is the name of the history's blob in a store.StateStore.
const historyState = "config.history"

// historyHead names the blob holding the last version's number in a
// shared store.
const historyHead = "config.head"

// historyMax is how many versions are kept (the oldest are dropped).
const historyMax = 100

// history is the list of applied versions, kept in the store: shared by
// the replicas of a shared store (store.SharedState: Redis), on this node
// in the embedded store (store.StateStore), in memory otherwise.
type history struct {
	mu       sync.Mutex
	versions []ConfigVersion
	blobs    *blobs // nil: memory only
}

// blobs are the calls history needs of a store: the list, and for a
// shared one its head (the last version's number), which replicas read
// often.
type blobs struct {
	shared   bool
	save     func(ctx context.Context, data []byte) error
	load     func(ctx context.Context) ([]byte, error)
	saveHead func(ctx context.Context, n int) error
	loadHead func(ctx context.Context) (int, error)
}

func blobsOf(st store.Store) *blobs {
	if ss, ok := st.(store.SharedState); ok {
		return &blobs{shared: true,
			save: func(ctx context.Context, b []byte) error { return ss.SaveShared(ctx, historyState, b) },
			load: func(ctx context.Context) ([]byte, error) { return ss.LoadShared(ctx, historyState) },
			saveHead: func(ctx context.Context, n int) error {
				return ss.SaveShared(ctx, historyHead, strconv.AppendInt(nil, int64(n), 10))
			},
			loadHead: func(ctx context.Context) (int, error) {
				b, err := ss.LoadShared(ctx, historyHead)
				if errors.Is(err, store.ErrNotFound) {
					return 0, nil
				}
				if err != nil {
					return 0, err
				}
				return strconv.Atoi(string(b))
			}}
	}
	if ss, ok := st.(store.StateStore); ok {
		return &blobs{
			save: func(ctx context.Context, b []byte) error { return ss.SaveState(ctx, historyState, b) },
			load: func(ctx context.Context) ([]byte, error) { return ss.LoadState(ctx, historyState) }}
	}
	return nil
}

// bind loads the versions saved in st, if it keeps them, and keeps
// saving there; what was recorded before (the start version) is
// appended when it differs from the last saved text. It reports whether
// the history is shared with other replicas.
func (h *history) bind(ctx context.Context, st store.Store) (shared bool, err error) {
	b := blobsOf(st)
	if b == nil {
		return false, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	pending := h.versions
	h.blobs = b
	if err := h.loadLocked(ctx); err != nil {
		h.versions, h.blobs = pending, nil
		return false, err
	}
	for _, v := range pending {
		if last := h.lastLocked(); last != nil && last.Text == v.Text && v.Source == "start" {
			continue // a restart with the file unchanged
		}
		h.appendLocked(v)
	}
	return b.shared, h.saveLocked(ctx)
}

// loadLocked replaces the versions with the store's.
func (h *history) loadLocked(ctx context.Context) error {
	data, err := h.blobs.load(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var saved []ConfigVersion
	if len(data) > 0 {
		if err := json.Unmarshal(data, &saved); err != nil {
			return err
		}
	}
	h.versions = saved
	return nil
}

// refresh reads a shared history again (another replica appended).
func (h *history) refresh(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.blobs == nil {
		return nil
	}
	return h.loadLocked(ctx)
}

// record appends v (numbered after the last) and saves the list.
// A shared history is read again first, so that the new version follows
// the last any replica recorded. (Two replicas recording at the same
// moment may both number theirs n+1, the later save winning: appending
// is read-modify-write, not a transaction.)
func (h *history) record(ctx context.Context, v ConfigVersion) (ConfigVersion, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.blobs != nil && h.blobs.shared {
		if err := h.loadLocked(ctx); err != nil {
			return ConfigVersion{}, err
		}
	}
	v = h.appendLocked(v)
	return v, h.saveLocked(ctx)
}

func (h *history) appendLocked(v ConfigVersion) ConfigVersion {
	v.Version = 1
	if last := h.lastLocked(); last != nil {
		v.Version = last.Version + 1
	}
	h.versions = append(h.versions, v)
	if n := len(h.versions); n > historyMax {
		h.versions = append([]ConfigVersion(nil), h.versions[n-historyMax:]...)
	}
	return v
}

func (h *history) lastLocked() *ConfigVersion {
	if len(h.versions) == 0 {
		return nil
	}
	return &h.versions[len(h.versions)-1]
}

func (h *history) saveLocked(ctx context.Context) error {
	if h.blobs == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(h.versions); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	if err := h.blobs.save(ctx, b.Bytes()); err != nil {
		return err
	}
	if last := h.lastLocked(); last != nil && h.blobs.saveHead != nil {
		return h.blobs.saveHead(ctx, last.Version)
	}
	return nil
}

// head is the last version's number in a shared history (0 if none, or
// if the history is not shared).
func (h *history) head(ctx context.Context) (int, error) {
	h.mu.Lock()
	b := h.blobs
	h.mu.Unlock()
	if b == nil || b.loadHead == nil {
		return 0, nil
	}
	return b.loadHead(ctx)
}

// list returns the versions, oldest first.
func (h *history) list() []ConfigVersion {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ConfigVersion(nil), h.versions...)
}

// get returns version n.
func (h *history) get(n int) (ConfigVersion, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.versions {
		if v.Version == n {
			return v, true
		}
	}
	return ConfigVersion{}, false
}

// current is the last version, or false if none was recorded.
func (h *history) current() (ConfigVersion, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v := h.lastLocked(); v != nil {
		return *v, true
	}
	return ConfigVersion{}, false
}
