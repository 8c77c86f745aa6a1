package config

import (
	"log/slog"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	// Listeners are the client-facing HTTP listeners. Default: one on
	// 127.0.0.1:8080.
	Listeners []Listener `yaml:"listeners"`
	// Server tunes the client-facing transport.
	Server Server `yaml:"server"`
	// Log configures the structured log.
	Log Log `yaml:"log"`
	// Admin is the operators' listener: metrics and health. Default: off.
	Admin Admin `yaml:"admin"`
	// Sessions holds defaults for every route's sessions.
	Sessions Sessions `yaml:"sessions"`
	// Routes map client-facing paths to upstream MCP servers. At least one.
	Routes []Route `yaml:"routes"`
	// Store is where sessions are kept so they survive a restart.
	Store Store `yaml:"store"`
	// Cluster is how replicas sharing a Redis store reach each other.
	Cluster Cluster `yaml:"cluster"`
	// Auth is how clients authenticate on every route (see auth.go).
	Auth *Auth `yaml:"auth"`
	// Policies decide what sessions may use and what flows back to them
	// (see policy.go), enforced by each route's policy stage.
	Policies []Policy `yaml:"policies"`
	// Quotas are budgets on what sessions may do (see quota.go).
	Quotas []Quota `yaml:"quotas"`
	// Audit is the audit trail (see audit.go). Default: none.
	Audit *Audit `yaml:"audit"`
	// Telemetry is OpenTelemetry tracing (see telemetry.go). Default: off.
	Telemetry Telemetry `yaml:"telemetry"`
}

// Cluster configures the internal hop between replicas. A stdio session's
// process lives in one replica; the others forward its requests there
// over this hop, authenticated with a key derived from sessions.id_keys,
// and take the session over when that replica is gone.
type Cluster struct {
	// Listen is the internal listener's host:port. Required with store
	// kind redis when a route has a stdio upstream. Keep it on a private
	// network: only replicas need to reach it.
	Listen string `yaml:"listen"`
	// Advertise is the host:port other replicas dial to reach this one.
	// Default: Listen (which then must not be a wildcard address).
	Advertise string `yaml:"advertise"`
}

// Store kinds.
const (
	StoreEmbedded = "embedded"
	StoreMemory   = "memory"
	StoreRedis    = "redis"
)

// Store selects the session store.
type Store struct {
	// Kind is embedded (a file under DataDir; sessions survive restarts),
	// memory (nothing survives) or redis (shared by several replicas).
	// Default embedded.
	Kind string `yaml:"kind"`
	// DataDir holds the embedded store's file. Default ./mcpgate-data.
	DataDir string `yaml:"data_dir"`
	// FlushInterval is how long session activity may wait in memory
	// before it is written; a crash loses at most this much activity time,
	// never a session. Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// OnUnavailable is what the gateway does while the store cannot be
	// reached: fail-closed (refuse new sessions and look-ups it cannot
	// check, 503 with Retry-After) or fail-open (serve from memory; new
	// sessions are not shared or persisted). Default fail-closed.
	OnUnavailable string `yaml:"on_unavailable"`
	// Redis is the shared store of a cluster (kind: redis).
	Redis *RedisStore `yaml:"redis"`
}

// RedisStore locates a Redis server.
type RedisStore struct {
	// Addr is host:port. Default 127.0.0.1:6379.
	Addr     string `yaml:"addr"`
	Username string `yaml:"username"`
	// Password is a secret: never logged.
	Password Secret `yaml:"password"`
	DB       int    `yaml:"db"`
	// Prefix starts every key, so deployments can share a server.
	// Default "mcpgate:".
	Prefix string `yaml:"prefix"`
	// TLS connects with TLS (system roots) when true.
	TLS bool `yaml:"tls"`
}

// Listener is one address mcpgate accepts clients on.
type Listener struct {
	// Address is host:port. Default 127.0.0.1:8080. Binding to a
	// non-loopback address is an explicit choice.
	Address string `yaml:"address"`
	// AllowedHosts lists Host header values (host or host:port) accepted on
	// this listener, to stop DNS rebinding. Empty on a loopback listener:
	// localhost, 127.0.0.1 and [::1] on any port. Empty elsewhere: any.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowedOrigins lists browser origins (scheme://host[:port]) allowed to
	// call. A request without Origin is always allowed; one whose Origin is
	// not listed gets 403. Empty: loopback origins only on a loopback
	// listener, none elsewhere. "*" allows any origin.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// TrustedProxies lists the proxies (CIDRs, or single IPs) in front of
	// this listener. A request whose direct peer is one has its client
	// address taken from Forwarded (for=) or else X-Forwarded-For, walked
	// from the right past trusted hops; from any other peer those headers
	// are ignored. Empty (the default): the peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TLS serves HTTPS when set.
	TLS *ServerTLS `yaml:"tls"`
}

// ServerTLS is a certificate for a listener.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Server tunes the client-facing Streamable HTTP transport.
type Server struct {
	// MaxBodyBytes caps a POST body; larger gets 413. Default 4 MiB.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included, so a
	// client cannot hold a handler by sending its body slowly. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// KeepAlive is the interval of SSE keep-alive comments on quiet
	// streams. Default 15s.
	KeepAlive time.Duration `yaml:"keepalive"`
	// StreamAfter switches a POST response from a single JSON body to an SSE
	// stream (so keep-alives can flow) when the upstream has not answered in
	// this long. Default 5s.
	StreamAfter time.Duration `yaml:"stream_after"`
	// WriteTimeout bounds each write to a client; a client that does not
	// read for this long loses its stream. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ShutdownTimeout bounds the drain of in-flight requests on shutdown.
	// Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxConnections caps the client connections open at once, across
	// every client listener. A connection beyond it is answered 503 and
	// closed, so the gateway never runs out of file descriptors and the
	// admin listener (which has its own AdminMaxConnections) keeps
	// answering. Default: half the file descriptors the process may open
	// once AdminMaxConnections and a fixed reserve are set aside; the
	// other half is left for upstream sockets, stdio pipes and the store
	// (see DefaultMaxConnections).
	MaxConnections int `yaml:"max_connections"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
	// Levels sets the level of single components (frontend, upstream,
	// session, ...: Components), each below or above Level:
	// {frontend: debug, upstream: warn}. A component not named follows
	// Level.
	Levels map[string]string `yaml:"levels"`
}

// SlogLevel converts Level.
func (l Log) SlogLevel() slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(l.Level))
	return lv
}

// Sessions bound every session: caps, rates, timeouts, resumption.
type Sessions struct {
	// IdleTimeout ends a session with no request and no open stream for
	// this long. Default 30m. Never zero: sessions are always bounded.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TTL ends a session this long after it was created, whatever its
	// activity. Default 24h.
	TTL time.Duration `yaml:"ttl"`
	// Max caps live sessions across the gateway. Default 10000.
	Max int `yaml:"max"`
	// WhenFull is what a full cap does: reject (503 with Retry-After),
	// evict-oldest or evict-idlest. Default evict-idlest.
	WhenFull string `yaml:"when_full"`
	// PerPrincipal and PerTenant cap the sessions of one principal or
	// tenant. Default: no cap.
	PerPrincipal Cap `yaml:"per_principal"`
	PerTenant    Cap `yaml:"per_tenant"`
	// PerAddress caps the sessions of anonymous clients per client IP
	// address. Default (when absent) 32, evict-idlest (the address's own
	// idlest session); `max: 0` switches it off.
	PerAddress *Cap `yaml:"per_address"`
	// CreationRate limits how fast sessions are created (429 beyond).
	CreationRate CreationRate `yaml:"creation_rate"`
	// RequestRate limits requests per principal (per client address for
	// anonymous clients), so a new session does not refill it. Default off.
	RequestRate RequestRate `yaml:"request_rate"`
	// Resumption bounds the SSE events kept for Last-Event-ID.
	Resumption Resumption `yaml:"resumption"`
	// IDKeys sign session ids (HMAC) so that forged or random ids are
	// refused without a store look-up; the first key mints, all verify
	// (rotation: add the new key first, drop the old one later). Replicas
	// of a cluster must share them. Default: none (plain random ids).
	IDKeys []IDKey `yaml:"id_keys"`
}

// IDKey is one session id signing key.
type IDKey struct {
	// ID is 1–16 of [A-Za-z0-9], public, carried in every id.
	ID string `yaml:"id"`
	// Secret is at least 32 bytes; never logged.
	Secret Secret `yaml:"secret"`
}

// Cap is a session cap with its policy. Max zero means no cap.
type Cap struct {
	Max int `yaml:"max"`
	// WhenFull: reject, evict-oldest or evict-idlest. Default reject.
	WhenFull string `yaml:"when_full"`
}

// Window is a sliding-window rate: at most Limit in any Window.
// Limit zero switches it off.
type Window struct {
	Limit  int           `yaml:"limit"`
	Window time.Duration `yaml:"window"`
}

// CreationRate limits session creation.
type CreationRate struct {
	// Global across all clients. Default off.
	Global Window `yaml:"global"`
	// PerAddress per client IP address. Default (when absent) 120 per 10s;
	// `limit: 0` switches it off.
	PerAddress *Window `yaml:"per_address"`
	// PerPrincipal per authenticated principal. Default off.
	PerPrincipal Window `yaml:"per_principal"`
}

// RequestRate is a token bucket. PerSecond zero switches it off.
type RequestRate struct {
	PerSecond float64 `yaml:"per_second"`
	// Burst is the bucket size. Default: PerSecond rounded up, at least 1.
	Burst int `yaml:"burst"`
}

// Resumption bounds the event history kept for SSE resumption.
type Resumption struct {
	// SessionBytes bounds one session's kept events. Default 1MiB.
	SessionBytes ByteSize `yaml:"session_bytes"`
	// TotalBytes bounds all sessions' kept events together. Default 64MiB.
	TotalBytes ByteSize `yaml:"total_bytes"`
}

// Route maps one client-facing path to one upstream.
type Route struct {
	// Name identifies the route in logs and metrics. Default: derived from Path.
	Name string `yaml:"name"`
	// Path is the MCP endpoint path, e.g. /mcp or /servers/github/mcp.
	Path string `yaml:"path"`
	// Upstream is the server behind the route.
	Upstream Upstream `yaml:"upstream"`
	// ClientEra says which clients the route serves: auto (both eras;
	// mcpgate translates when a client's era is not the upstream's),
	// legacy (only clients that send initialize) or modern (only
	// 2026-07-28 clients). Default auto.
	ClientEra string `yaml:"client_era"`
	// RequestTimeout bounds one request's round trip to the upstream;
	// on expiry the upstream gets notifications/cancelled and the client
	// -32001. Default 5m.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// IdleTimeout overrides sessions.idle_timeout.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TTL overrides sessions.ttl.
	TTL time.Duration `yaml:"ttl"`
	// MaxSessions caps this route's live sessions. Default: no route cap.
	MaxSessions int `yaml:"max_sessions"`
	// WhenFull is the route cap's policy. Default reject.
	WhenFull string `yaml:"when_full"`
	// RetryTools lists tools that are safe to call again when the upstream
	// lost its session mid-request (reads and idempotent tools).
	RetryTools []string `yaml:"retry_tools"`
	// TrustAnnotations lets the upstream's own tool annotations
	// (readOnlyHint, idempotentHint) mark tools safe to retry. Default
	// false: annotations are untrusted unless the operator says so.
	TrustAnnotations bool `yaml:"trust_annotations"`
	// CacheHints are the 2026-07-28 caching hints (ttlMs, cacheScope)
	// mcpgate puts on results it translates from a legacy server for
	// modern clients, where the server gave none.
	CacheHints CacheHints `yaml:"cache_hints"`
	// Auth replaces the top-level auth for this route.
	Auth *Auth `yaml:"auth"`
	// Health checks the upstream (see Health). Default off.
	Health *Health `yaml:"health"`
	// SessionTools adds mcpgate's own tools (mcpgate_session_status,
	// mcpgate_session_tighten, mcpgate_session_end) and resources
	// (mcpgate://session, mcpgate://health) inside every session of the
	// route, merged into the upstream's lists. Default false.
	SessionTools bool `yaml:"session_tools"`
}

// CacheHints are caching hints for translated results (tools/list,
// prompts/list, resources/list, resources/templates/list, resources/read).
type CacheHints struct {
	// TTL is how long a client may cache such a result. Default 0: stale
	// at once, re-fetched whenever needed.
	TTL time.Duration `yaml:"ttl"`
	// Scope is public (no user-specific data: caches may be shared across
	// authorization contexts) or private. Default private.
	Scope string `yaml:"scope"`
}

// Cache scopes for CacheHints.Scope.
const (
	CacheScopePrivate = "private"
	CacheScopePublic  = "public"
)

// Era values for Upstream.Era.
const (
	EraAuto   = "auto"
	EraLegacy = "legacy"
	EraModern = "modern"
)

// Upstream is exactly one of HTTP or Stdio.
type Upstream struct {
	// Era pins the protocol era the upstream speaks: auto (probe the modern
	// era first, fall back to initialize; cached), legacy or modern.
	// Default auto.
	Era   string         `yaml:"era"`
	HTTP  *HTTPUpstream  `yaml:"http"`
	Stdio *StdioUpstream `yaml:"stdio"`
	// Embedded is a go-sdk server in the gateway's own process, given by
	// the program that embeds mcpgate (the library's NewHandler); never in
	// a file.
	Embedded bool `yaml:"-"`
	// Credentials give each principal its own upstream credential.
	Credentials *Credentials `yaml:"credentials"`
	// Retry repeats requests that are safe to repeat after a transient
	// failure (see Retry). Absent: off.
	Retry *Retry `yaml:"retry"`
	// Breaker is a circuit breaker over the upstream (see Breaker).
	// Absent: off.
	Breaker *Breaker `yaml:"breaker"`
	// Share says which client sessions use one upstream session (HTTP)
	// or process (stdio) together: session (each its own, the default),
	// principal, tenant or route. Clients whose initialize differs in
	// capabilities or protocol version never share.
	Share string `yaml:"share"`
	// MaxShared is how many client sessions one shared upstream serves;
	// more upstreams open as needed. Default 32; only with share above
	// session.
	MaxShared int `yaml:"max_shared"`
}

// Kind reports "http", "stdio", "embedded" or "".
func (u Upstream) Kind() string {
	switch {
	case u.Embedded:
		return "embedded"
	case u.HTTP != nil:
		return "http"
	case u.Stdio != nil:
		return "stdio"
	}
	return ""
}

// HTTPUpstream is a remote Streamable HTTP server.
type HTTPUpstream struct {
	// URL of the upstream's MCP endpoint (http or https).
	URL string `yaml:"url"`
	// Headers are added to every upstream request (for example an API key
	// for the upstream). Values are secrets: never logged. The client's
	// own Authorization header is never forwarded.
	Headers map[string]Secret `yaml:"headers"`
	// ConnectTimeout bounds dialing and the TLS handshake. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ResponseHeaderTimeout bounds waiting for response headers on
	// exchanges that are not client requests (era probe, the upstream's GET
	// stream, notifications, DELETE). Client requests are bounded by the
	// route's request_timeout instead, since a server may hold back the
	// headers of a long tool call. Default 60s.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// MaxIdleConns is the connection pool size. Default 64.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// TLS configures the client side of TLS.
	TLS *ClientTLS `yaml:"tls"`
}

// ClientTLS configures TLS towards an upstream.
type ClientTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// StdioUpstream is a local server process mcpgate spawns, one per session.
type StdioUpstream struct {
	// Command is the executable (looked up in PATH).
	Command string `yaml:"command"`
	// Args are its arguments.
	Args []string `yaml:"args"`
	// Env adds variables. Values are secrets: never logged.
	Env map[string]Secret `yaml:"env"`
	// InheritEnv passes mcpgate's whole environment to the process. Default
	// false: only PATH, HOME, LANG, TMPDIR and TZ plus Env.
	InheritEnv bool `yaml:"inherit_env"`
	// Dir is the working directory. Default: mcpgate's.
	Dir string `yaml:"dir"`
	// ShutdownGrace is how long to wait after closing stdin, and again
	// after SIGTERM, before escalating. Default 5s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MaxMessageBytes bounds one line the process writes. Default 16 MiB.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// Sandbox confines each process. Default: none.
	Sandbox *Sandbox `yaml:"sandbox"`
}

// Secret is a string that logs as REDACTED.
type Secret string

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// String hides the value from fmt too.
func (Secret) String() string { return "REDACTED" }

// Reveal returns the secret's value, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }
