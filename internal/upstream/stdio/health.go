package stdio

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

var healthInitParams = []byte(`{"protocolVersion":"` + core.Version20250618 + `","capabilities":{},"clientInfo":{"name":"mcpgate-health","version":` + strconv.Quote("1") + `}}`)

// Check spawns the server, sends initialize and stops the process again:
// any answer (a result or a JSON-RPC error) means the server works; a
// process that cannot start, exits before answering or says nothing
// within ctx does not. The caller bounds how often it runs (each check is
// a process). A credential the check cannot get (per-principal
// credentials, no principal) passes without a process.
func (u *Upstream) Check(ctx context.Context) error {
	if u.closed.Load() {
		return fmt.Errorf("stdio: health check: %w", upstream.ErrClosed)
	}
	env, owner, err := u.credentialEnv(ctx, nil)
	if err != nil {
		if errors.Is(err, upstream.ErrCredential) {
			return nil
		}
		return err
	}
	c, err := u.start(nil, "health", core.EraLegacy, discardSink{u.logger}, env, owner)
	if err != nil {
		return fmt.Errorf("stdio: health check: %w: %w", upstream.ErrNoAnswer, err)
	}
	defer func() { _ = c.Close(context.WithoutCancel(ctx)) }()
	if _, err := c.call(ctx, "initialize", healthInitParams); err != nil {
		return fmt.Errorf("stdio: health check: %w: %w", upstream.ErrNoAnswer, err)
	}
	return nil
}

var _ upstream.Checker = (*Upstream)(nil)
