package conformancefixture

import (
	"context"
	"crypto/rand"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Implementation is the identity the fixture reports in initialize results
// and in server/discover.
var Implementation = mcp.Implementation{
	Name:    "mcpgate-conformance-fixture",
	Title:   "mcpgate conformance fixture",
	Version: "1.0.0",
}

// WatchedResourceURI is the resource whose content changes, and for which
// notifications/resources/updated is sent to subscribers, every
// WatchedResourceInterval.
const WatchedResourceURI = "test://watched-resource"

// WatchedResourceInterval is how often the watched resource changes by
// default (Options.WatchedInterval).
const WatchedResourceInterval = 3 * time.Second

// Options tune a fixture. The zero value is the fixture the conformance
// suite expects.
type Options struct {
	// WatchedInterval is how often WatchedResourceURI changes (and its
	// subscribers are notified); zero means WatchedResourceInterval. Tests
	// that wait for a notifications/resources/updated set it small, so that
	// they wait for the change rather than for the default tick.
	WatchedInterval time.Duration
}

// watchedInterval is o's WatchedInterval, or its default.
func (o *Options) watchedInterval() time.Duration {
	if o == nil || o.WatchedInterval <= 0 {
		return WatchedResourceInterval
	}
	return o.WatchedInterval
}

// fixture is the state behind one server returned by New.
type fixture struct {
	server *mcp.Server
	// stateKey authenticates the requestState of input_required results.
	stateKey []byte
	// life is New's context: the fixture stops when it is done.
	life context.Context
	// watchedEvery is how often WatchedResourceURI changes.
	watchedEvery time.Duration
	// watchedRevision counts the changes of WatchedResourceURI.
	watchedRevision atomic.Int64
	// cancelled counts calls of test_wait_for_cancellation that ended
	// because the caller cancelled them.
	cancelled atomic.Int64
}

// New returns a fresh server with the default Options. Background
// goroutines (e.g. the watched-resource updater) stop when ctx is done.
func New(ctx context.Context) *mcp.Server { return NewWithOptions(ctx, nil) }

// NewWithOptions is New tuned by opts (nil: the defaults).
func NewWithOptions(ctx context.Context, opts *Options) *mcp.Server {
	f := &fixture{life: ctx, stateKey: make([]byte, 32), watchedEvery: opts.watchedInterval()}
	rand.Read(f.stateKey) // never fails; see crypto/rand.Read
	impl := Implementation
	f.server = mcp.NewServer(&impl, &mcp.ServerOptions{
		Instructions:       "Conformance fixture: every tool, resource and prompt the MCP conformance suite's server scenarios call.",
		CompletionHandler:  f.complete,
		SubscribeHandler:   f.subscribe,
		UnsubscribeHandler: f.unsubscribe,
	})
	f.addTools()
	f.addInputRequiredTools()
	f.addResources()
	f.addPrompts()
	go f.updateWatched(ctx)
	return f.server
}

// Handler serves New over Streamable HTTP. stateless=false: legacy sessions
// (Mcp-Session-Id); stateless=true: go-sdk's stateless (2026-07-28 capable)
// handler.
//
// All requests share one server, so a list change made through one request
// (test_trigger_tool_change) reaches the subscription streams of others. The
// handler keeps go-sdk's default DNS-rebinding protection: a request that
// arrived on a loopback address but names another Host is refused with 403.
//
// With sessions, SSE streams are resumable: events carry ids, each POST
// stream starts with a priming event, and a client that lost a stream (see
// test_reconnection) gets the rest with GET and Last-Event-ID. go-sdk's
// session handler speaks only the dated versions up to 2025-11-25; the
// 2026-07-28 era needs stateless=true.
func Handler(ctx context.Context, stateless bool) http.Handler {
	return HandlerWithOptions(ctx, stateless, nil)
}

// HandlerWithOptions is Handler serving NewWithOptions(ctx, opts).
func HandlerWithOptions(ctx context.Context, stateless bool, opts *Options) http.Handler {
	srv := NewWithOptions(ctx, opts)
	hopts := &mcp.StreamableHTTPOptions{Stateless: stateless}
	if !stateless {
		hopts.EventStore = mcp.NewMemoryEventStore(nil)
	}
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, hopts)
}

// updateWatched changes the watched resource and notifies its subscribers
// until ctx is done.
func (f *fixture) updateWatched(ctx context.Context) {
	tick := time.NewTicker(f.watchedEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f.watchedRevision.Add(1)
			// An error only means that some subscriber could not be reached.
			_ = f.server.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: WatchedResourceURI})
		}
	}
}

// subscribe accepts subscriptions to the fixture's resources; go-sdk keeps
// track of them and delivers ResourceUpdated to the subscribed sessions.
func (f *fixture) subscribe(_ context.Context, req *mcp.SubscribeRequest) error {
	if !knownResource(req.Params.URI) {
		return mcp.ResourceNotFoundError(req.Params.URI)
	}
	return nil
}

func (f *fixture) unsubscribe(_ context.Context, req *mcp.UnsubscribeRequest) error {
	if !knownResource(req.Params.URI) {
		return mcp.ResourceNotFoundError(req.Params.URI)
	}
	return nil
}

// Completion candidates, per prompt argument and template variable.
var (
	promptArgCandidates = map[string][]string{
		"arg1":        {"hello", "help", "test", "testing"},
		"arg2":        {"world", "word", "test", "tested"},
		"resourceUri": {staticTextURI, staticBinaryURI, WatchedResourceURI, "test://template/1/data"},
	}
	templateIDCandidates = []string{"1", "12", "123", "2", "42"}
)

// complete answers completion/complete with the candidates that start with
// the typed value, for the prompt arguments and the template variable.
func (f *fixture) complete(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	var candidates []string
	p := req.Params
	switch {
	case p.Ref == nil || p.Argument.Name == "":
	case p.Ref.Type == "ref/prompt" && slices.Contains(promptArgs[p.Ref.Name], p.Argument.Name):
		candidates = promptArgCandidates[p.Argument.Name]
	case p.Ref.Type == "ref/resource" && p.Ref.URI == templateURI && p.Argument.Name == "id":
		candidates = templateIDCandidates
	}
	values := []string{}
	for _, c := range candidates {
		if strings.HasPrefix(c, p.Argument.Value) {
			values = append(values, c)
		}
	}
	return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: values, Total: len(values)}}, nil
}
