package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// historyMax is how many versions are kept (the oldest are dropped).
const historyMax = 100

// history is the list of applied versions, kept in the store when it
// keeps state (the embedded store), in memory otherwise.
type history struct {
	mu       sync.Mutex
	versions []ConfigVersion
	st       store.StateStore // nil: memory only
}

// bind loads the versions saved in st, if it keeps state, and keeps
// saving there; what was recorded before (the start version) is
// appended when it differs from the last saved text.
func (h *history) bind(ctx context.Context, st store.Store) error {
	ss, ok := st.(store.StateStore)
	if !ok {
		return nil
	}
	data, err := ss.LoadState(ctx, historyState)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var saved []ConfigVersion
	if len(data) > 0 {
		if err := json.Unmarshal(data, &saved); err != nil {
			return err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	pending := h.versions
	h.versions, h.st = saved, ss
	for _, v := range pending {
		if last := h.lastLocked(); last != nil && last.Text == v.Text && v.Source == "start" {
			continue // a restart with the file unchanged
		}
		h.appendLocked(v)
	}
	return h.saveLocked(ctx)
}

// record appends v (numbered after the last) and saves the list.
func (h *history) record(ctx context.Context, v ConfigVersion) (ConfigVersion, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
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
	if h.st == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(h.versions); err != nil {
		return err
	}
	return h.st.SaveState(context.WithoutCancel(ctx), historyState, b.Bytes())
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
