package stdio

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// answer is a shell script that reads the probe, then prints reply with the
// probe's id substituted for ID.
func answer(reply string) Options {
	return script(`read l
id=$(printf '%s' "$l" | sed 's/.*"id":\("[^"]*"\).*/\1/')
printf '%s\n' '` + reply + `' | sed "s/ID/$id/"
cat >/dev/null`)
}

func TestProbe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Options
		args    []string
		want    upstream.Info
		wantErr string
	}{
		{
			name: "go-sdk server",
			want: upstream.Info{Era: core.EraModern, ModernVersions: []string{"2026-07-28"}},
		},
		{
			name: "go-sdk server pinned to legacy revisions",
			args: []string{"-legacy"},
			want: upstream.Info{Era: core.EraLegacy},
		},
		{
			name: "discover result",
			cfg:  answer(`{"jsonrpc":"2.0","id":ID,"result":{"supportedVersions":["2026-07-28","2027-03-01","2025-11-25","bogus"],"capabilities":{}}}`),
			want: upstream.Info{Era: core.EraModern, ModernVersions: []string{"2026-07-28", "2027-03-01"}},
		},
		{
			name: "discover result without versions",
			cfg:  answer(`{"jsonrpc":"2.0","id":ID,"result":{"capabilities":{}}}`),
			want: upstream.Info{Era: core.EraModern, ModernVersions: []string{"2026-07-28"}},
		},
		{
			name: "discover result with legacy versions only",
			cfg:  answer(`{"jsonrpc":"2.0","id":ID,"result":{"supportedVersions":["2025-11-25"]}}`),
			want: upstream.Info{Era: core.EraLegacy},
		},
		{
			name: "unsupported version, modern ones offered",
			cfg:  answer(`{"jsonrpc":"2.0","id":ID,"error":{"code":-32022,"message":"unsupported","data":{"supported":["2027-03-01"],"requested":"2026-07-28"}}}`),
			want: upstream.Info{Era: core.EraModern, ModernVersions: []string{"2027-03-01"}},
		},
		{
			name: "method not found",
			cfg:  answer(`{"jsonrpc":"2.0","id":ID,"error":{"code":-32601,"message":"Method not found"}}`),
			want: upstream.Info{Era: core.EraLegacy},
		},
		{
			name: "invalid params",
			cfg:  answer(`{"jsonrpc":"2.0","id":ID,"error":{"code":-32602,"message":"server not initialized"}}`),
			want: upstream.Info{Era: core.EraLegacy},
		},
		{
			name: "no answer",
			cfg:  script(`cat >/dev/null`),
			want: upstream.Info{Era: core.EraLegacy},
		},
		{
			name:    "exits without answering",
			cfg:     script(`echo bye >&2; exit 2`),
			wantErr: "exit status 2",
		},
		{
			name:    "cannot start",
			cfg:     Options{Command: filepath.Join(os.TempDir(), "mcpgate-no-such-command")},
			wantErr: "no such file",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := newTestUpstream(t, tc.cfg, tc.args...)
			u.probeTimeout = 500 * time.Millisecond
			for attempt := range 2 {
				info, err := u.Probe(timeout(t, 10*time.Second))
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("attempt %d: Probe error %v, want %q", attempt, err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("attempt %d: %v", attempt, err)
				}
				if diff := cmp.Diff(tc.want, info); diff != "" {
					t.Errorf("attempt %d: info (-want +got):\n%s", attempt, diff)
				}
			}
			// Cached only when the probe reached the server.
			wantSpawns := 1
			if tc.wantErr != "" && tc.cfg.Command == "sh" {
				wantSpawns = 2
			}
			if tc.wantErr != "" && tc.cfg.Command != "sh" {
				wantSpawns = 0
			}
			if n := u.rec.count("stdio_spawn"); n != wantSpawns {
				t.Errorf("%d processes spawned, want %d", n, wantSpawns)
			}
		})
	}
}

func TestProbeConcurrentCallersShareOneProbe(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			info, err := u.Probe(timeout(t, 10*time.Second))
			if err != nil || info.Era != core.EraModern {
				t.Errorf("Probe = %v, %v", info, err)
			}
		})
	}
	wg.Wait()
	if n := u.rec.count("stdio_spawn"); n != 1 {
		t.Errorf("%d probe processes, want 1", n)
	}
	// The cached slice is the caller's to keep.
	info, _ := u.Probe(context.Background())
	info.ModernVersions[0] = "mutated"
	if again, _ := u.Probe(context.Background()); again.ModernVersions[0] != core.Version20260728 {
		t.Errorf("cache mutated through a returned slice")
	}
}

func TestProbeCallerContext(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, script(`cat >/dev/null`))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := u.Probe(ctx); err == nil {
		t.Fatal("Probe with an expiring ctx succeeded")
	}
	u.probeMu.Lock()
	probed := u.probed
	u.probeMu.Unlock()
	if probed {
		t.Error("a probe cut short by the caller was cached")
	}
}
