package httpup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Interface guards.
var (
	_ upstream.Upstream = (*Upstream)(nil)
	_ upstream.Conn     = (*legacyConn)(nil)
	_ upstream.Conn     = (*modernConn)(nil)
)

// Options configure New. The gateway translates its configuration into
// them; this package knows nothing of the configuration file.
type Options struct {
	// URL of the upstream's MCP endpoint (http or https, no credentials).
	URL string
	// Headers are added to every upstream request (an API key for the
	// upstream, say). Values may be secrets: they are never logged
	// (Options logs them as REDACTED), and errors name the header only.
	Headers map[string]string
	// ConnectTimeout bounds dialing and the TLS handshake. Zero: 10s.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds waiting for response headers on
	// exchanges that are not client requests (era probe, GET streams,
	// notifications, DELETE). Zero: 60s.
	ResponseHeaderTimeout time.Duration
	// MaxIdleConns is the connection pool size. Zero: 64.
	MaxIdleConns int
	// TLS configures the client side of TLS; nil uses the system roots.
	TLS *TLSOptions
	// Tap sees the messages the upstream originates itself (see
	// upstream.Tap): the notifications/cancelled a legacy Conn sends for
	// an abandoned request, and the probe's server/discover and its
	// answer (with no session). Nil is off.
	Tap upstream.Tap
	// Credential, when set, puts the principal's own credential in its
	// header (Credential.Name) on every request of a session of that
	// principal, GET streams and DELETE included; the probe, which has no
	// session, carries its caller's (upstream.CallerOf). A request whose
	// principal has none fails with the Credential's error and is not
	// sent. A static header of the same name is dropped. Nil is off, at
	// no cost.
	Credential upstream.Credential
}

// TLSOptions configure TLS towards the upstream.
type TLSOptions struct {
	// CAFile holds the PEM roots to verify the server with, instead of the
	// system's.
	CAFile string
	// CertFile and KeyFile are a client certificate, both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name verified (and sent as SNI).
	ServerName string
	// InsecureSkipVerify turns verification off (an explicit operator
	// choice).
	InsecureSkipVerify bool
}

// LogValue keeps Headers' values out of logs.
func (o Options) LogValue() slog.Value {
	keys := make([]string, 0, len(o.Headers))
	for k := range o.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return slog.GroupValue(slog.String("url", o.URL), slog.Any("header_keys", keys),
		slog.Duration("connect_timeout", o.ConnectTimeout), slog.Duration("response_header_timeout", o.ResponseHeaderTimeout),
		slog.Int("max_idle_conns", o.MaxIdleConns), slog.Bool("tls", o.TLS != nil))
}

// Defaults for zero Options values.
const (
	defaultConnectTimeout        = 10 * time.Second
	defaultResponseHeaderTimeout = 60 * time.Second
	defaultMaxIdleConns          = 64
)

// Upstream is one remote Streamable HTTP server. All Conns opened on it
// share one *http.Transport (one connection pool). Requests go to the
// Transport directly rather than through an *http.Client: there is no
// overall timeout to apply (streams are long-lived; contexts bound
// requests), no cookie jar, and redirects are not followed (the
// configured headers are meant for this URL only), so the Client would
// only add a header copy per request. It is safe for concurrent use.
type Upstream struct {
	route  string
	log    *slog.Logger
	target *url.URL
	// static holds the configured headers, canonical keys, one value each.
	// Requests share the value slices; nothing writes to them.
	static    http.Header
	transport *http.Transport
	// lean serves a plain http:// upstream without a proxy (see lean);
	// nil sends everything through transport.
	lean *lean
	// headerTimeout bounds waiting for response headers on exchanges that
	// are not client requests (see Upstream.do).
	headerTimeout time.Duration
	tap           upstream.Tap
	// cred adds the principal's credential to each request, in header
	// credName; nil without per-principal credentials.
	cred     upstream.Credential
	credName string

	// info is the cached probe result, nil until a probe succeeded.
	info    atomic.Pointer[upstream.Info]
	probeMu sync.Mutex
	probing *probeCall // the probe in flight, if any
	// kept is the legacy Conn that last initialized an upstream session
	// and is still open: health checks ping in its session (Check).
	kept atomic.Pointer[legacyConn]
}

// reservedHeaders are set by the transport itself; configuring them as
// static headers would corrupt the protocol.
var reservedHeaders = []string{
	"Accept", "Content-Type", "Content-Length", "Host", "Connection", "Transfer-Encoding",
	hdrSessionID, hdrProtocolVersion, hdrMethod, hdrName, hdrLastEventID,
}

// New builds the client side of an HTTP upstream. It does no I/O: the
// upstream's era is found by the first Probe. route names the route in logs;
// logger nil means discard.
func New(cfg Options, route string, logger *slog.Logger) (*Upstream, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	target, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("httpup: url: %w", err)
	case target.Scheme != "http" && target.Scheme != "https":
		return nil, fmt.Errorf("httpup: url %q: scheme must be http or https", target.Redacted())
	case target.Host == "":
		return nil, fmt.Errorf("httpup: url %q: no host", target.Redacted())
	case target.User != nil:
		return nil, errors.New("httpup: url: credentials in the URL are not allowed; configure headers instead")
	}
	var errs []error
	static := make(http.Header, len(cfg.Headers))
	keys := make([]string, 0, len(cfg.Headers))
	for k := range cfg.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ck := http.CanonicalHeaderKey(k)
		v := cfg.Headers[k]
		switch {
		case !validHeaderName(k):
			errs = append(errs, fmt.Errorf("headers: %q is not a valid header name", k))
		case slices.Contains(reservedHeaders, ck):
			errs = append(errs, fmt.Errorf("headers: %q is set by mcpgate itself", k))
		case !validHeaderValue(v):
			// The value is a secret: name the header only.
			errs = append(errs, fmt.Errorf("headers: value of %q contains control characters", k))
		default:
			static[ck] = []string{v}
		}
	}
	if cfg.Credential != nil {
		if n := cfg.Credential.Name(); !validHeaderName(n) || slices.Contains(reservedHeaders, http.CanonicalHeaderKey(n)) {
			errs = append(errs, fmt.Errorf("credential: %q cannot carry a credential", n))
		}
	}
	tlsConf, err := clientTLS(cfg.TLS)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("httpup: %w", errors.Join(errs...))
	}

	connect := cmp0(cfg.ConnectTimeout, defaultConnectTimeout)
	idle := cfg.MaxIdleConns
	if idle <= 0 {
		idle = defaultMaxIdleConns
	}
	dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   connect,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	u := &Upstream{
		route:     route,
		log:       logger.With("route", route, "upstream_host", target.Host),
		target:    target,
		static:    static,
		transport: tr,

		headerTimeout: cmp0(cfg.ResponseHeaderTimeout, defaultResponseHeaderTimeout),
		tap:           cfg.Tap,
	}
	u.lean = leanFor(tr, target, dialer, idle)
	if cfg.Credential != nil {
		u.cred, u.credName = cfg.Credential, http.CanonicalHeaderKey(cfg.Credential.Name())
		delete(u.static, u.credName)
	}
	return u, nil
}

func cmp0(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func clientTLS(c *TLSOptions) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // an explicit operator choice
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %q: no PEM certificates", c.CAFile)
		}
		conf.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		if c.CertFile == "" || c.KeyFile == "" {
			return nil, errors.New("tls: cert_file and key_file go together")
		}
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// Open returns a Conn for one gateway session speaking p.Era (which must be
// EraLegacy or EraModern). It does no I/O: a legacy Conn starts its upstream
// session with the first RoundTrip (the client's initialize).
func (u *Upstream) Open(ctx context.Context, p upstream.OpenParams, sink upstream.Sink) (upstream.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	life, kill := context.WithCancel(context.Background())
	b := connBase{u: u, sink: sink, session: p.Session, era: p.Era, life: life, kill: kill, inflight: &outbounds{}}
	context.AfterFunc(life, b.inflight.endAll)
	switch p.Era {
	case core.EraLegacy:
		return &legacyConn{connBase: b}, nil
	case core.EraModern:
		c := &modernConn{connBase: b, version: core.Version20260728}
		if p.Session != nil && core.EraOf(p.Session.ProtocolVersion) == core.EraModern {
			c.version = p.Session.ProtocolVersion
		}
		return c, nil
	}
	kill()
	return nil, fmt.Errorf("httpup: open: era %s: want legacy or modern", p.Era)
}

// Close releases idle connections. Open Conns keep working until closed.
func (u *Upstream) Close() error {
	u.transport.CloseIdleConnections()
	if u.lean != nil {
		u.lean.closeIdle()
	}
	return nil
}

// probeCall is one probe in flight; concurrent callers wait for it.
type probeCall struct {
	done chan struct{}
	info upstream.Info
	err  error
	// abandoned: the probing caller's own context ended, so its error
	// says nothing about the upstream; waiters probe again.
	abandoned bool
}

// Probe finds the upstream's era with server/discover (2026-07-28): a
// result listing a modern version, or a modern JSON-RPC error (-32022
// naming modern versions, -32020, -32021), means EraModern; any other 4xx,
// or a result or error that names no modern version, means EraLegacy (the
// spec's fallback rule). 401, 403, 407, 408, 429, 5xx, redirects and
// transport failures are errors: they say nothing about the era and are not
// cached. One probe runs at a time; concurrent callers share its result.
//
// The returned Info.ModernVersions is shared: callers must not modify it.
func (u *Upstream) Probe(ctx context.Context) (upstream.Info, error) {
	if info := u.info.Load(); info != nil {
		return *info, nil
	}
	for {
		u.probeMu.Lock()
		if info := u.info.Load(); info != nil {
			u.probeMu.Unlock()
			return *info, nil
		}
		if c := u.probing; c != nil {
			u.probeMu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return upstream.Info{}, ctx.Err()
			}
			if c.err == nil {
				return c.info, nil
			}
			if c.abandoned && ctx.Err() == nil {
				continue
			}
			return upstream.Info{}, c.err
		}
		c := &probeCall{done: make(chan struct{})}
		u.probing = c
		u.probeMu.Unlock()

		c.info, c.err = u.probe(ctx)
		// A probe that failed for its caller's own reasons (its context
		// ended, it has no credential) says nothing to the others.
		c.abandoned = c.err != nil && (ctx.Err() != nil || errors.Is(c.err, upstream.ErrCredential))
		u.probeMu.Lock()
		if c.err == nil {
			info := c.info
			u.info.Store(&info)
		}
		u.probing = nil
		u.probeMu.Unlock()
		close(c.done)
		if c.err == nil {
			u.log.Info("upstream_probed", "era", c.info.Era.String(), "modern_versions", c.info.ModernVersions, "modern_only", c.info.ModernOnly)
		}
		return c.info, c.err
	}
}

const discoverID = `"mcpgate-discover"`

var discoverBody = []byte(`{"jsonrpc":"2.0","id":` + discoverID + `,"method":"server/discover","params":{"_meta":{` +
	`"` + core.MetaProtocolVersion + `":"` + core.Version20260728 + `",` +
	`"` + core.MetaClientCapabilities + `":{},` +
	`"` + core.MetaClientInfo + `":{"name":"mcpgate","version":` + strconv.Quote(buildVersion()) + `}}}}`)

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func (u *Upstream) probe(ctx context.Context) (upstream.Info, error) {
	h := u.headers(true, 2)
	h[hdrProtocolVersion] = versionValue(core.Version20260728)
	h[hdrMethod] = methodValue("server/discover")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if u.tap != nil {
		if m, err := core.Decode(discoverBody); err == nil {
			m.Era, m.Received = core.EraModern, time.Now()
			u.tap(ctx, nil, m)
		}
	}
	resp, err := u.do(ctx, http.MethodPost, discoverBody, h)
	if err != nil {
		return upstream.Info{}, fmt.Errorf("httpup: probe: %w", err)
	}
	defer resp.Body.Close()
	legacy := upstream.Info{Era: core.EraLegacy}
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		r := responseReader{era: core.EraModern, cancel: cancel}
		m, err := r.read(ctx, resp, core.ID(discoverID), nil)
		if err != nil {
			return upstream.Info{}, fmt.Errorf("httpup: probe: %w", err)
		}
		u.tap.Emit(ctx, nil, m)
		if m.Kind == core.KindResponse {
			var res struct {
				SupportedVersions []string `json:"supportedVersions"`
			}
			_ = json.Unmarshal(m.Result, &res)
			if v := modernOnly(res.SupportedVersions); len(v) > 0 {
				return upstream.Info{Era: core.EraModern, ModernVersions: v, ModernOnly: !anyLegacy(res.SupportedVersions)}, nil
			}
			return legacy, nil
		}
		return classifyError(m), nil
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusProxyAuthRequired,
		code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return upstream.Info{}, fmt.Errorf("httpup: probe: %w", readHTTPError(resp))
	case code >= 400 && code < 500:
		if m := readErrorBody(resp, core.ID(discoverID)); m != nil {
			m.Direction, m.Era, m.Received = core.ServerToClient, core.EraModern, time.Now()
			u.tap.Emit(ctx, nil, m)
			return classifyError(m), nil
		}
		return legacy, nil
	default:
		return upstream.Info{}, fmt.Errorf("httpup: probe: %w", readHTTPError(resp))
	}
}

// classifyError reads an error answer to server/discover.
func classifyError(m *core.Message) upstream.Info {
	var e struct {
		Code int `json:"code"`
		Data struct {
			Supported []string `json:"supported"`
		} `json:"data"`
	}
	_ = json.Unmarshal(m.Error, &e)
	switch e.Code {
	case core.CodeUnsupportedProtocolVersion:
		if v := modernOnly(e.Data.Supported); len(v) > 0 {
			return upstream.Info{Era: core.EraModern, ModernVersions: v, ModernOnly: !anyLegacy(e.Data.Supported)}
		}
	case core.CodeHeaderMismatch, core.CodeMissingRequiredCapability:
		// Only modern servers validate these; which versions they speak
		// is not said.
		return upstream.Info{Era: core.EraModern}
	}
	return upstream.Info{Era: core.EraLegacy}
}

// anyLegacy reports whether a server's list of supported versions names a
// legacy one: a server that lists none serves legacy clients only through
// the bridge.
func anyLegacy(versions []string) bool {
	return slices.ContainsFunc(versions, func(v string) bool { return core.EraOf(v) == core.EraLegacy })
}

func modernOnly(versions []string) []string {
	var out []string
	for _, v := range versions {
		if core.EraOf(v) == core.EraModern && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
