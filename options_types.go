// The configuration file as Go structs: the same keys as internal/config, secrets
// as plain strings, sizes as byte counts. Keep in step with internal/config
// (TestOptionsMirrorConfig fails when a key is missing).

package mcpgate

import (
	"log/slog"
	"time"
)

// Options mirror the configuration file (see LoadOptions): the same
// keys, defaults and validation. The zero value is safe: it caps live
// sessions at 10000 (idlest evicted), ends sessions idle for 30m, allows
// 120 new sessions per 10s per address and keeps sessions in memory.
type Options struct {
	// Listeners are the client-facing HTTP listeners (Run; NewHandler
	// refuses them: the program serves the handler). Default: one on
	// 127.0.0.1:8080.
	Listeners []Listener `yaml:"listeners,omitempty"`
	// Server tunes the client-facing transport.
	Server Server `yaml:"server,omitempty"`
	// Log configures the structured log.
	Log Log `yaml:"log,omitempty"`
	// Admin is the operators' listener: metrics and health. Default: off.
	Admin Admin `yaml:"admin,omitempty"`
	// Sessions holds defaults for every route's sessions.
	Sessions Sessions `yaml:"sessions,omitempty"`
	// Routes map client-facing paths to upstream MCP servers (Run, which
	// needs one at least; NewHandler refuses them: its one route is the
	// embedded server).
	Routes []Route `yaml:"routes,omitempty"`
	// Store is where sessions are kept so they survive a restart.
	Store Store `yaml:"store,omitempty"`
	// Cluster is how replicas sharing a Redis store reach each other.
	Cluster Cluster `yaml:"cluster,omitempty"`
	// Auth is how clients authenticate on every route (see auth.go).
	Auth *Auth `yaml:"auth,omitempty"`
	// Policies decide what sessions may use and what flows back to them.
	Policies []Policy `yaml:"policies,omitempty"`
	// Quotas are budgets on what sessions may do.
	Quotas []Quota `yaml:"quotas,omitempty"`
	// Audit is the audit trail. Default: none.
	Audit *Audit `yaml:"audit,omitempty"`
	// Telemetry is OpenTelemetry tracing. Default: off.
	Telemetry Telemetry `yaml:"telemetry,omitempty"`
	// Hooks are told of every session's lifecycle (Go callbacks; not in
	// the file).
	Hooks Hooks `yaml:"-"`
	// Logger receives the gateway's structured log. Default: none for
	// NewHandler; for Run, JSON (or text) on stderr at log.level.
	Logger *slog.Logger `yaml:"-"`
	// LogLevel is the level Logger logs at, which the admin server's
	// log_level_set changes (Run).
	LogLevel *slog.LevelVar `yaml:"-"`
	// File is the configuration file Run serves: its text is the first
	// configuration version, read again on SIGHUP and, with Watch, when it
	// changes; the fields above are then not used.
	File string `yaml:"-"`
	// Watch reloads File when it changes (Run).
	Watch bool `yaml:"-"`
	// Override adjusts every configuration Run reads (from File, or
	// applied through the admin server) before it is checked and used.
	Override func(*Options) `yaml:"-"`
}

// Cluster configures the internal hop between replicas. A stdio session's
// process lives in one replica; the others forward its requests there
// over this hop, authenticated with a key derived from sessions.id_keys,
// and take the session over when that replica is gone.
type Cluster struct {
	// Listen is the internal listener's host:port. Required with store
	// kind redis when a route has a stdio upstream. Keep it on a private
	// network: only replicas need to reach it.
	Listen string `yaml:"listen,omitempty"`
	// Advertise is the host:port other replicas dial to reach this one.
	// Default: Listen (which then must not be a wildcard address).
	Advertise string `yaml:"advertise,omitempty"`
}

// Store selects the session store.
type Store struct {
	// Kind is embedded (a file under DataDir; sessions survive restarts),
	// memory (nothing survives) or redis (shared by several replicas).
	// Default memory for NewHandler, embedded for Run.
	Kind string `yaml:"kind,omitempty"`
	// DataDir holds the embedded store's file. Default ./mcpgate-data.
	DataDir string `yaml:"data_dir,omitempty"`
	// FlushInterval is how long session activity may wait in memory
	// before it is written; a crash loses at most this much activity time,
	// never a session. Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval,omitempty"`
	// OnUnavailable is what the gateway does while the store cannot be
	// reached: fail-closed (refuse new sessions and look-ups it cannot
	// check, 503 with Retry-After) or fail-open (serve from memory; new
	// sessions are not shared or persisted). Default fail-closed.
	OnUnavailable string `yaml:"on_unavailable,omitempty"`
	// Redis is the shared store of a cluster (kind: redis).
	Redis *RedisStore `yaml:"redis,omitempty"`
}

// RedisStore locates a Redis server.
type RedisStore struct {
	// Addr is host:port. Default 127.0.0.1:6379.
	Addr     string `yaml:"addr,omitempty"`
	Username string `yaml:"username,omitempty"`
	// Password is a secret: never logged.
	Password string `yaml:"password,omitempty"`
	DB       int    `yaml:"db,omitempty"`
	// Prefix starts every key, so deployments can share a server.
	// Default "mcpgate:".
	Prefix string `yaml:"prefix,omitempty"`
	// TLS connects with TLS (system roots) when true.
	TLS bool `yaml:"tls,omitempty"`
}

// Listener is one address mcpgate accepts clients on.
type Listener struct {
	// Address is host:port. Default 127.0.0.1:8080. Binding to a
	// non-loopback address is an explicit choice.
	Address string `yaml:"address,omitempty"`
	// AllowedHosts lists Host header values (host or host:port) accepted on
	// this listener, to stop DNS rebinding. Empty on a loopback listener:
	// localhost, 127.0.0.1 and [::1] on any port. Empty elsewhere: any.
	AllowedHosts []string `yaml:"allowed_hosts,omitempty"`
	// AllowedOrigins lists browser origins (scheme://host[:port]) allowed to
	// call. A request without Origin is always allowed; one whose Origin is
	// not listed gets 403. Empty: loopback origins only on a loopback
	// listener, none elsewhere. "*" allows any origin.
	AllowedOrigins []string `yaml:"allowed_origins,omitempty"`
	// TrustedProxies lists the proxies (CIDRs, or single IPs) in front of
	// this listener. A request whose direct peer is one has its client
	// address taken from Forwarded (for=) or else X-Forwarded-For, walked
	// from the right past trusted hops; from any other peer those headers
	// are ignored. Empty (the default): the peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	// TLS serves HTTPS when set.
	TLS *ServerTLS `yaml:"tls,omitempty"`
}

// ServerTLS is a certificate for a listener.
type ServerTLS struct {
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
}

// Server tunes the client-facing Streamable HTTP transport.
type Server struct {
	// MaxBodyBytes caps a POST body; larger gets 413. Default 4 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes,omitempty"`
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout,omitempty"`
	// ReadTimeout bounds reading a whole request, body included, so a
	// client cannot hold a handler by sending its body slowly. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout,omitempty"`
	// KeepAlive is the interval of SSE keep-alive comments on quiet
	// streams. Default 15s.
	KeepAlive time.Duration `yaml:"keepalive,omitempty"`
	// StreamAfter switches a POST response from a single JSON body to an SSE
	// stream (so keep-alives can flow) when the upstream has not answered in
	// this long. Default 5s.
	StreamAfter time.Duration `yaml:"stream_after,omitempty"`
	// WriteTimeout bounds each write to a client; a client that does not
	// read for this long loses its stream. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout,omitempty"`
	// ShutdownTimeout bounds the drain of in-flight requests on shutdown.
	// Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout,omitempty"`
	// MaxConnections caps the client connections open at once, across
	// every client listener. A connection beyond it is answered 503 and
	// closed, so the gateway never runs out of file descriptors and the
	// admin listener (which has its own AdminMaxConnections) keeps
	// answering. Default: half the file descriptors the process may open
	// once AdminMaxConnections and a fixed reserve are set aside; the
	// other half is left for upstream sockets, stdio pipes and the store
	// (see DefaultMaxConnections).
	MaxConnections int `yaml:"max_connections,omitempty"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level,omitempty"`
	// Format is json or text. Default json.
	Format string `yaml:"format,omitempty"`
	// Levels sets the level of single components (frontend, upstream,
	// session, ...) above or below Level.
	Levels map[string]string `yaml:"levels,omitempty"`
}

// Sessions bound every session: caps, rates, timeouts, resumption.
type Sessions struct {
	// IdleTimeout ends a session with no request and no open stream for
	// this long. Default 30m. Never zero: sessions are always bounded.
	IdleTimeout time.Duration `yaml:"idle_timeout,omitempty"`
	// TTL ends a session this long after it was created, whatever its
	// activity. Default 24h.
	TTL time.Duration `yaml:"ttl,omitempty"`
	// Max caps live sessions across the gateway. Default 10000.
	Max int `yaml:"max,omitempty"`
	// WhenFull is what a full cap does: reject (503 with Retry-After),
	// evict-oldest or evict-idlest. Default evict-idlest.
	WhenFull string `yaml:"when_full,omitempty"`
	// PerPrincipal and PerTenant cap the sessions of one principal or
	// tenant. Default: no cap.
	PerPrincipal Cap `yaml:"per_principal,omitempty"`
	PerTenant    Cap `yaml:"per_tenant,omitempty"`
	// PerAddress caps the sessions of anonymous clients per client IP
	// address. Default (when absent) 32, evict-idlest (the address's own
	// idlest session); `max: 0` switches it off.
	PerAddress *Cap `yaml:"per_address,omitempty"`
	// CreationRate limits how fast sessions are created (429 beyond).
	CreationRate CreationRate `yaml:"creation_rate,omitempty"`
	// RequestRate limits requests per principal (per client address for
	// anonymous clients), so a new session does not refill it: a token
	// bucket. Default off (PerSecond zero).
	RequestRate struct {
		PerSecond float64 `yaml:"per_second,omitempty"`
		// Burst is the bucket size. Default: PerSecond rounded up, at least 1.
		Burst int `yaml:"burst,omitempty"`
	} `yaml:"request_rate,omitempty"`
	// Resumption bounds the SSE events kept for Last-Event-ID.
	Resumption struct {
		// SessionBytes bounds one session's kept events. Default 1MiB.
		SessionBytes int64 `yaml:"session_bytes,omitempty"`
		// TotalBytes bounds all sessions' kept events together. Default 64MiB.
		TotalBytes int64 `yaml:"total_bytes,omitempty"`
	} `yaml:"resumption,omitempty"`
	// IDKeys sign session ids (HMAC) so that forged or random ids are
	// refused without a store look-up; the first key mints, all verify
	// (rotation: add the new key first, drop the old one later). Replicas
	// of a cluster must share them. Default: none (plain random ids).
	IDKeys []IDKey `yaml:"id_keys,omitempty"`
}

// IDKey is one session id signing key.
type IDKey struct {
	// ID is 1–16 of [A-Za-z0-9], public, carried in every id.
	ID string `yaml:"id,omitempty"`
	// string is at least 32 bytes; never logged.
	Secret string `yaml:"secret,omitempty"`
}

// Cap is a session cap with its policy. Max zero means no cap.
type Cap struct {
	Max int `yaml:"max,omitempty"`
	// WhenFull: reject, evict-oldest or evict-idlest. Default reject.
	WhenFull string `yaml:"when_full,omitempty"`
}

// Window is a sliding-window rate: at most Limit in any Window.
// Limit zero switches it off.
type Window struct {
	Limit  int           `yaml:"limit,omitempty"`
	Window time.Duration `yaml:"window,omitempty"`
}

// CreationRate limits session creation.
type CreationRate struct {
	// Global across all clients. Default off.
	Global Window `yaml:"global,omitempty"`
	// PerAddress per client IP address. Default (when absent) 120 per 10s;
	// `limit: 0` switches it off.
	PerAddress *Window `yaml:"per_address,omitempty"`
	// PerPrincipal per authenticated principal. Default off.
	PerPrincipal Window `yaml:"per_principal,omitempty"`
}

// Route maps one client-facing path to one upstream.
type Route struct {
	// Name identifies the route in logs and metrics. Default: derived from Path.
	Name string `yaml:"name,omitempty"`
	// Path is the MCP endpoint path, e.g. /mcp or /servers/github/mcp.
	Path string `yaml:"path,omitempty"`
	// Upstream is the server behind the route.
	Upstream Upstream `yaml:"upstream,omitempty"`
	// ClientEra says which clients the route serves: auto (both eras;
	// mcpgate translates when a client's era is not the upstream's),
	// legacy (only clients that send initialize) or modern (only
	// 2026-07-28 clients). Default auto.
	ClientEra string `yaml:"client_era,omitempty"`
	// RequestTimeout bounds one request's round trip to the upstream;
	// on expiry the upstream gets notifications/cancelled and the client
	// -32001. Default 5m.
	RequestTimeout time.Duration `yaml:"request_timeout,omitempty"`
	// IdleTimeout overrides sessions.idle_timeout.
	IdleTimeout time.Duration `yaml:"idle_timeout,omitempty"`
	// TTL overrides sessions.ttl.
	TTL time.Duration `yaml:"ttl,omitempty"`
	// MaxSessions caps this route's live sessions. Default: no route cap.
	MaxSessions int `yaml:"max_sessions,omitempty"`
	// WhenFull is the route cap's policy. Default reject.
	WhenFull string `yaml:"when_full,omitempty"`
	// RetryTools lists tools that are safe to call again when the upstream
	// lost its session mid-request (reads and idempotent tools).
	RetryTools []string `yaml:"retry_tools,omitempty"`
	// TrustAnnotations lets the upstream's own tool annotations
	// (readOnlyHint, idempotentHint) mark tools safe to retry. Default
	// false: annotations are untrusted unless the operator says so.
	TrustAnnotations bool `yaml:"trust_annotations,omitempty"`
	// CacheHints are the 2026-07-28 caching hints (ttlMs, cacheScope)
	// mcpgate puts on results it translates from a legacy server for
	// modern clients, where the server gave none (tools/list,
	// prompts/list, resources/list, resources/templates/list,
	// resources/read).
	CacheHints struct {
		// TTL is how long a client may cache such a result. Default 0: stale
		// at once, re-fetched whenever needed.
		TTL time.Duration `yaml:"ttl,omitempty"`
		// Scope is public (no user-specific data: caches may be shared across
		// authorization contexts) or private. Default private.
		Scope string `yaml:"scope,omitempty"`
	} `yaml:"cache_hints,omitempty"`
	// Auth replaces the top-level auth for this route.
	Auth *Auth `yaml:"auth,omitempty"`
	// Health checks the route's upstream. Default: off (counted up).
	Health *Health `yaml:"health,omitempty"`
	// SessionTools adds mcpgate's own tools and resources inside every
	// session of the route. Default false.
	SessionTools bool `yaml:"session_tools,omitempty"`
}

// Upstream is exactly one of HTTP or Stdio.
type Upstream struct {
	// Era pins the protocol era the upstream speaks: auto (probe the modern
	// era first, fall back to initialize; cached), legacy or modern.
	// Default auto.
	Era   string         `yaml:"era,omitempty"`
	HTTP  *HTTPUpstream  `yaml:"http,omitempty"`
	Stdio *StdioUpstream `yaml:"stdio,omitempty"`
	// Credentials give each principal its own upstream credential.
	Credentials *Credentials `yaml:"credentials,omitempty"`
	// Retry repeats requests that are safe to repeat after a transient
	// failure. Default: off.
	Retry *Retry `yaml:"retry,omitempty"`
	// Breaker is a circuit breaker over the upstream. Default: off.
	Breaker *Breaker `yaml:"breaker,omitempty"`
	// Share says which client sessions use one upstream session (HTTP)
	// or process (stdio) together: "session" (each its own, the
	// default), "principal", "tenant" or "route". Clients whose
	// initialize differs in capabilities or protocol version never share.
	Share string `yaml:"share,omitempty"`
	// MaxShared is how many client sessions one shared upstream serves;
	// more upstreams open as needed. Default 32 when Share is above
	// session.
	MaxShared int `yaml:"max_shared,omitempty"`
}

// HTTPUpstream is a remote Streamable HTTP server.
type HTTPUpstream struct {
	// URL of the upstream's MCP endpoint (http or https).
	URL string `yaml:"url,omitempty"`
	// Headers are added to every upstream request (for example an API key
	// for the upstream). Values are secrets: never logged. The client's
	// own Authorization header is never forwarded.
	Headers map[string]string `yaml:"headers,omitempty"`
	// ConnectTimeout bounds dialing and the TLS handshake. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout,omitempty"`
	// ResponseHeaderTimeout bounds waiting for response headers on
	// exchanges that are not client requests (era probe, the upstream's GET
	// stream, notifications, DELETE). Client requests are bounded by the
	// route's request_timeout instead, since a server may hold back the
	// headers of a long tool call. Default 60s.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout,omitempty"`
	// MaxIdleConns is the connection pool size. Default 64.
	MaxIdleConns int `yaml:"max_idle_conns,omitempty"`
	// TLS configures the client side of TLS.
	TLS *ClientTLS `yaml:"tls,omitempty"`
}

// ClientTLS configures TLS towards an upstream.
type ClientTLS struct {
	CAFile             string `yaml:"ca_file,omitempty"`
	CertFile           string `yaml:"cert_file,omitempty"`
	KeyFile            string `yaml:"key_file,omitempty"`
	ServerName         string `yaml:"server_name,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
}

// StdioUpstream is a local server process mcpgate spawns, one per session.
type StdioUpstream struct {
	// Command is the executable (looked up in PATH).
	Command string `yaml:"command,omitempty"`
	// Args are its arguments.
	Args []string `yaml:"args,omitempty"`
	// Env adds variables. Values are secrets: never logged.
	Env map[string]string `yaml:"env,omitempty"`
	// InheritEnv passes mcpgate's whole environment to the process. Default
	// false: only PATH, HOME, LANG, TMPDIR and TZ plus Env.
	InheritEnv bool `yaml:"inherit_env,omitempty"`
	// Dir is the working directory. Default: mcpgate's.
	Dir string `yaml:"dir,omitempty"`
	// ShutdownGrace is how long to wait after closing stdin, and again
	// after SIGTERM, before escalating. Default 5s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace,omitempty"`
	// MaxMessageBytes bounds one line the process writes. Default 16 MiB.
	MaxMessageBytes int64 `yaml:"max_message_bytes,omitempty"`
	// Sandbox confines each process. Default: none.
	Sandbox *Sandbox `yaml:"sandbox,omitempty"`
}

// Admin is the operator's listener: /metrics (Prometheus), /healthz
// (the process is alive) and /readyz (it can serve: listeners up, store
// reachable). It is separate from the client listeners so that it can
// stay on loopback, or a private network, while clients reach the others.
type Admin struct {
	// Listen is host:port. Empty (the default): no admin listener. A port
	// alone (":9090") binds loopback (127.0.0.1); binding elsewhere is an
	// explicit choice: name the address, e.g. 0.0.0.0:9090.
	Listen string `yaml:"listen,omitempty"`
	// MCP serves the control plane as an MCP server at /mcp on the admin
	// listener. Default off.
	MCP AdminMCP `yaml:"mcp,omitempty"`
	// ReadyRequires says which routes /readyz needs up: any (the default)
	// or all.
	ReadyRequires string `yaml:"ready_requires,omitempty"`
}

// AdminMCP configures the admin MCP server: who may use it, with which
// role.
type AdminMCP struct {
	Enabled bool `yaml:"enabled,omitempty"`
	// APIKeys are the operators' keys (Authorization: Bearer <key>),
	// stored as SHA-256 like auth.api_keys.
	APIKeys []AdminKey `yaml:"api_keys,omitempty"`
	// RoleClaim, when set, also admits the OAuth access tokens the
	// top-level auth.oauth accepts, with the role this claim names.
	RoleClaim string `yaml:"role_claim,omitempty"`
}

// AdminKey is one operator's key.
type AdminKey struct {
	// KeySHA256 is the hex SHA-256 of the key (`mcpgate key new` prints
	// one).
	KeySHA256 string `yaml:"key_sha256,omitempty"`
	// Principal names the operator in history and logs. Default: "admin:"
	// and the first 8 characters of the hash.
	Principal string `yaml:"principal,omitempty"`
	// Role is viewer, operator or admin. Required.
	Role string `yaml:"role,omitempty"`
}

// Auth is how clients authenticate, at the top level (every route) or on
// one route (routes[].auth, which replaces the top level's for that route
// as a whole). Without any, a gateway whose listeners are all on loopback
// serves anonymous clients; one listening elsewhere refuses to start
// unless anonymous: true is written.
type Auth struct {
	// Anonymous admits requests that present no credentials, as the
	// principal "anonymous". Credentials that are presented must still be
	// valid: a bad token is refused, never taken as anonymous. Default
	// false when the block is written.
	Anonymous bool `yaml:"anonymous,omitempty"`
	// APIKeys are static bearer keys (Authorization: Bearer <key>), stored
	// as their SHA-256: `mcpgate key new` prints a fresh key and its entry.
	APIKeys []APIKey `yaml:"api_keys,omitempty"`
	// OAuth makes the route an OAuth 2.1 resource server: JWT access
	// tokens signed by the issuer's keys (JWKS), for this audience.
	OAuth *OAuth `yaml:"oauth,omitempty"`
	// Scopes are the scopes a message needs, per method or method:name
	// ("tools/call", "tools/call:deploy_*", "resources/read:file:*", "*";
	// `*` matches any run of characters). Every entry that matches a
	// message applies: its principal must hold all their scopes, else 403
	// insufficient_scope (401 for an anonymous caller).
	Scopes map[string][]string `yaml:"scopes,omitempty"`
}

// APIKey is one static key and the identity it stands for.
type APIKey struct {
	// KeySHA256 is the hex SHA-256 of the key (64 characters); the key
	// itself is never written in the file.
	KeySHA256 string `yaml:"key_sha256,omitempty"`
	// Principal is who the key stands for. Required.
	Principal string `yaml:"principal,omitempty"`
	// Tenant and Groups are the principal's, for quotas and policies.
	Tenant string   `yaml:"tenant,omitempty"`
	Groups []string `yaml:"groups,omitempty"`
	// Scopes are what the key grants, for auth.scopes.
	Scopes []string `yaml:"scopes,omitempty"`
}

// OAuth configures the validation of JWT access tokens (RFC 9068).
type OAuth struct {
	// Issuer is the authorization server's issuer identifier: the tokens'
	// iss, exactly; also what the Protected Resource Metadata names.
	Issuer string `yaml:"issuer,omitempty"`
	// JWKSURL is where the issuer publishes its signing keys.
	JWKSURL string `yaml:"jwks_url,omitempty"`
	// Audience is this gateway's resource identifier (RFC 8707): the URL
	// clients reach the route at. A token's aud must contain it.
	Audience string `yaml:"audience,omitempty"`
	// PrincipalClaim names the claim that identifies the caller; the
	// principal is the issuer, "#" and its value. Default sub.
	PrincipalClaim string `yaml:"principal_claim,omitempty"`
	// TenantClaim and GroupsClaim name the claims of the tenant (a
	// string) and groups (a list of strings, or one string). Default none.
	TenantClaim string `yaml:"tenant_claim,omitempty"`
	GroupsClaim string `yaml:"groups_claim,omitempty"`
	// RequiredScopes must all be in every token (scope or scp).
	RequiredScopes []string `yaml:"required_scopes,omitempty"`
}

// Credentials give each principal its own credential towards the
// upstream, failing closed: a principal without one is refused (HTTP 403,
// JSON-RPC -32016), never given another principal's, nor the route's
// static header or variable unless Fallback is "static". Exactly one of
// PerPrincipal, TokenExchange and Forward is set.
type Credentials struct {
	// PerPrincipal reads each principal's secret from a file.
	PerPrincipal *PerPrincipalCredentials `yaml:"per_principal,omitempty"`
	// TokenExchange trades the client's validated token for one the
	// upstream accepts (RFC 8693). HTTP upstreams only.
	TokenExchange *TokenExchange `yaml:"token_exchange,omitempty"`
	// Forward carries one named client header to one upstream header.
	// HTTP upstreams only.
	Forward *ForwardHeader `yaml:"forward,omitempty"`
	// Fallback is what a principal without a credential gets: "" (the
	// default: refused) or "static" (the route's own upstream.http.headers
	// entry or stdio env variable of the same name).
	Fallback string `yaml:"fallback,omitempty"`
}

// PerPrincipalCredentials map principals to secrets kept in a file: a
// YAML mapping `principal: secret`, mode 0600 or stricter, owned by the
// gateway's user. It is read again when it changes (checked at most once
// a second while in use); a change that does not load keeps the previous
// table and is logged as credentials_reload_failed.
type PerPrincipalCredentials struct {
	// Header carries the secret on every upstream request of the
	// principal's sessions (HTTP upstreams).
	Header string `yaml:"header,omitempty"`
	// Env carries it in the environment of the principal's processes
	// (stdio upstreams). A process serves one session, so one principal.
	Env string `yaml:"env,omitempty"`
	// Format is the value, with {secret} standing for the secret, e.g.
	// "Bearer {secret}". Default "{secret}".
	Format string `yaml:"format,omitempty"`
	// File is the secrets file.
	File string `yaml:"file,omitempty"`
}

// TokenExchange configures OAuth 2.0 Token Exchange (RFC 8693): the
// client's validated bearer token is the subject token; the token the
// token service issues is cached per principal until shortly before it
// expires.
type TokenExchange struct {
	// TokenURL is the token service's endpoint: https, or http to a
	// loopback address.
	TokenURL string `yaml:"token_url,omitempty"`
	// ClientID and ClientSecret authenticate the gateway to the token
	// service (HTTP Basic).
	ClientID     string `yaml:"client_id,omitempty"`
	ClientSecret string `yaml:"client_secret,omitempty"`
	// Audience and Scope are sent as the request's audience and scope.
	Audience string `yaml:"audience,omitempty"`
	Scope    string `yaml:"scope,omitempty"`
	// Header carries the issued token. Default Authorization.
	Header string `yaml:"header,omitempty"`
	// Format is the header's value, {secret} standing for the issued
	// token. Default "Bearer {secret}".
	Format string `yaml:"format,omitempty"`
}

// ForwardHeader carries the client's header From to the upstream as To.
// The client's own Authorization is never forwarded.
type ForwardHeader struct {
	From string `yaml:"from,omitempty"`
	To   string `yaml:"to,omitempty"`
}

// Sandbox confines each process of a stdio upstream: its own process
// group (always), no_new_privs, resource limits, optionally another user,
// and a Landlock file-system restriction where the kernel has Landlock.
// mcpgate applies it by starting itself as a small helper that restricts
// itself and then executes the command (the pid stays the same).
type Sandbox struct {
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS: neither the server nor
	// anything it runs gains privileges through set-user-ID binaries or
	// file capabilities. Default true; Landlock needs it.
	NoNewPrivs *bool `yaml:"no_new_privs,omitempty"`
	// User runs the process as this user: a name, a uid, or uid:gid
	// (a name's group is its primary group; a bare uid's group is the
	// same number). Supplementary groups are dropped. Default: the
	// gateway's own user. Needs a gateway running as root. The processes
	// limit counts per user, and root is exempt from it: with a
	// processes limit, a gateway running as root must name a user.
	User string `yaml:"user,omitempty"`
	// Rlimits are the process's resource limits (soft and hard).
	Rlimits Rlimits `yaml:"rlimits,omitempty"`
	// Memory caps the resident memory of the process group, in bytes:
	// past it the process is killed and its session ends with reason
	// resource_limit (cgroup v2 memory.max where the gateway may create
	// cgroups, else sampled every 250ms, so it can overshoot). Zero: none.
	Memory int64 `yaml:"memory,omitempty"`
	// CPU caps the CPU of the process group, in cores (0.5: half a core):
	// throttled by a cgroup v2 cpu.max, else killed past it on average
	// over 5s. Zero: none.
	CPU float64 `yaml:"cpu,omitempty"`
	// Filesystem restricts what paths the process can reach (Landlock).
	Filesystem *SandboxFilesystem `yaml:"filesystem,omitempty"`
}

// Rlimits are resource limits; zero leaves a limit as the gateway's.
type Rlimits struct {
	// AddressSpace caps virtual memory (RLIMIT_AS): an allocation past it
	// fails, which usually ends the process. Go and Node servers reserve
	// a lot of address space they never use: allow 2GiB or more for them.
	AddressSpace int64 `yaml:"address_space,omitempty"`
	// CPUSeconds caps CPU time (RLIMIT_CPU); the process is killed when
	// it is used up.
	CPUSeconds int64 `yaml:"cpu_seconds,omitempty"`
	// OpenFiles caps open file descriptors (RLIMIT_NOFILE).
	OpenFiles int64 `yaml:"open_files,omitempty"`
	// Processes caps the processes and threads of the process's user
	// (RLIMIT_NPROC), so a fork bomb stops there. It counts every process
	// of that user on the machine: give the route a user of its own.
	Processes int64 `yaml:"processes,omitempty"`
}

// SandboxFilesystem lists the paths (existing) the process may reach,
// each with what lies beneath it; everything else is refused. A relative
// path is taken from the directory the process starts in (the upstream's
// dir, or the gateway's working directory), as a relative command is.
// /dev/null is always readable and writable.
type SandboxFilesystem struct {
	// Read: read files and list directories.
	Read []string `yaml:"read,omitempty"`
	// Write: read, and create, write, truncate, rename and remove.
	Write []string `yaml:"write,omitempty"`
	// Exec: read and execute. The command must lie beneath one, and so
	// must the dynamic loader of a dynamically linked program (/lib,
	// /lib64) and the interpreter of a script.
	Exec []string `yaml:"exec,omitempty"`
	// Require refuses to start where the kernel lacks Landlock. Default
	// false: the restriction is then skipped (logged once at start-up as
	// sandbox_landlock_unavailable) and the rest of the sandbox applies.
	Require bool `yaml:"require,omitempty"`
}

// Audit is the audit trail: one JSON record per message crossing the
// gateway in either direction, per session lifecycle event, per refusal
// and per policy or quota decision, each chained to the one before by its
// SHA-256 (see the README). Absent (the default): no trail, and the
// audit stage is left out of every chain.
type Audit struct {
	// Payloads records arguments and results (redacted); false records
	// metadata only (method, names, sizes, outcome). Default false.
	Payloads bool `yaml:"payloads,omitempty"`
	// MaxPayloadBytes bounds one recorded payload; a longer one is
	// truncated, with its full size and SHA-256 recorded. Default 64KiB.
	MaxPayloadBytes int64 `yaml:"max_payload_bytes,omitempty"`
	// Redact removes secrets from recorded payloads.
	Redact AuditRedact `yaml:"redact,omitempty"`
	// Sinks are where records go; at least one. Every sink gets every
	// record, in order.
	Sinks []AuditSink `yaml:"sinks,omitempty"`
	// Buffer is how many records each sink holds in memory before the
	// rest go to its spool on disk. Default 10000.
	Buffer int `yaml:"buffer,omitempty"`
	// SpoolDir holds what a slow or failing sink cannot take yet,
	// delivered later in order, and the chain's head. Default
	// <store.data_dir>/audit-spool.
	SpoolDir string `yaml:"spool_dir,omitempty"`
	// Fsync is when file sinks flush their writes to stable storage:
	// interval (at most once a second after writes; the default), batch
	// (after each batch of records is written), always (after every
	// record), or never (at rotation and shutdown only, leaving the rest
	// to the operating system). Whatever the policy, a record is written
	// to the file as soon as the sink takes it, so a kill -9 loses only
	// records still queued in memory; fsync bounds what a power loss or
	// kernel crash loses (interval: about a second of records).
	Fsync string `yaml:"fsync,omitempty"`
}

// AuditRedact says what is removed from recorded payloads before they
// leave the gateway; a removed value is replaced by "[REDACTED]".
type AuditRedact struct {
	// Paths are JSON paths into the message: params.arguments.password,
	// result.content[*].text ([*] is every element of an array, [N] one).
	Paths []string `yaml:"paths,omitempty"`
	// Patterns are regular expressions (Go syntax); every match inside a
	// JSON string value is replaced.
	Patterns []string `yaml:"patterns,omitempty"`
	// Detectors name built-in sets of secret detectors, the same as
	// policies use: secrets.
	Detectors []string `yaml:"detectors,omitempty"`
}

// AuditSink is exactly one of File, Stdout and HTTP.
type AuditSink struct {
	File   *AuditFileSink `yaml:"file,omitempty"`
	Stdout *struct{}      `yaml:"stdout,omitempty"`
	HTTP   *AuditHTTPSink `yaml:"http,omitempty"`
}

// AuditFileSink writes JSON lines to a file, rotated by size; the chain
// continues across files.
type AuditFileSink struct {
	// Path of the current file; rotated files are kept beside it as
	// <name>-<time>.<ext>. Required.
	Path string `yaml:"path,omitempty"`
	// MaxSize rotates the file before it grows past this. Default 100MiB.
	MaxSize int64 `yaml:"max_size,omitempty"`
	// MaxFiles is how many files are kept, the current one included; the
	// oldest rotated file is removed past it. Default 20; -1 keeps every
	// file.
	MaxFiles int `yaml:"max_files,omitempty"`
}

// AuditHTTPSink POSTs batches of records (newline-delimited JSON,
// application/x-ndjson) to a collector; a failed batch is retried, with
// backoff, until it is taken.
type AuditHTTPSink struct {
	// URL is the collector's endpoint (http or https). Required.
	URL string `yaml:"url,omitempty"`
	// Headers are sent with every batch (a collector's token). Values are
	// secrets: never logged.
	Headers map[string]string `yaml:"headers,omitempty"`
	// Batch is the most records one POST carries. Default 500.
	Batch int `yaml:"batch,omitempty"`
	// Flush is the longest a record waits for its batch to fill. Default 1s.
	Flush time.Duration `yaml:"flush,omitempty"`
}

// Policy is one entry of the top-level policies list: what a set of
// sessions (Match) may use, and what is kept from what flows back to them.
// Every policy that matches a session applies: a tool, resource or prompt
// must pass them all, every rule of each is evaluated, and all their
// redactions and blocks apply.
type Policy struct {
	// Name names the policy in errors and decisions. Required, unique.
	Name string `yaml:"name,omitempty"`
	// Match selects the sessions the policy applies to; every list given
	// must contain the session's value (AND across lists); an empty or
	// missing list matches all. Groups match when the session's principal
	// is in any of them.
	Match Match `yaml:"match,omitempty"`
	// Tools, Resources and Prompts are glob lists over tool names,
	// resource URIs (resource templates' uriTemplate) and prompt names.
	Tools     *PolicyList `yaml:"tools,omitempty"`
	Resources *PolicyList `yaml:"resources,omitempty"`
	Prompts   *PolicyList `yaml:"prompts,omitempty"`
	// Rules are CEL expressions over the request; one that is true denies
	// it.
	Rules []PolicyRule `yaml:"rules,omitempty"`
	// ValidateInput checks tools/call arguments against the tool's
	// inputSchema (JSON Schema 2020-12) before the call goes upstream.
	ValidateInput bool `yaml:"validate_input,omitempty"`
	// Redact rewrites matches in results, resource contents, prompt
	// messages and notifications.
	Redact []PolicyRedact `yaml:"redact,omitempty"`
	// Block withholds a result that matches any pattern entirely.
	Block []PolicyBlock `yaml:"block,omitempty"`
}

// Match selects the sessions a policy or a quota applies to, by route
// name, tenant, principal and group.
type Match struct {
	Routes     []string `yaml:"routes,omitempty"`
	Tenants    []string `yaml:"tenants,omitempty"`
	Principals []string `yaml:"principals,omitempty"`
	Groups     []string `yaml:"groups,omitempty"`
}

// PolicyList is an allowlist and a denylist of globs (doublestar syntax:
// `*` any run of characters but `/`, `**` any run, `?`, `[...]`,
// `{a,b}`). A name must match some allow pattern when allow is given, and
// no deny pattern: deny wins.
type PolicyList struct {
	Allow []string `yaml:"allow,omitempty"`
	Deny  []string `yaml:"deny,omitempty"`
}

// PolicyRule is one CEL rule: when Deny evaluates to true the request is
// refused with Message.
type PolicyRule struct {
	Deny    string `yaml:"deny,omitempty"`
	Message string `yaml:"message,omitempty"`
}

// PolicyRedact is either a pattern and its replacement, or a list of
// built-in detector sets (secrets).
type PolicyRedact struct {
	Pattern string `yaml:"pattern,omitempty"`
	// Replace is what a match becomes ($1, ${name} expand groups).
	// Default "[REDACTED]".
	Replace   string   `yaml:"replace,omitempty"`
	Detectors []string `yaml:"detectors,omitempty"`
}

// PolicyBlock is a pattern whose match withholds a whole result.
type PolicyBlock struct {
	Pattern string `yaml:"pattern,omitempty"`
}

// Quota is one budget (quotas[]): limits on what the sessions it matches
// may do, counted per session, per principal or per tenant. Every quota
// that matches a session applies to it; each is enforced on its own, and
// the first that refuses answers the client.
type Quota struct {
	// Name identifies the quota in errors, logs, events, metrics and
	// store keys: 1–64 of [A-Za-z0-9_.-]. Required, unique.
	Name string `yaml:"name,omitempty"`
	// Match selects the sessions the quota applies to. Every field that
	// is set must match (AND); a field matches when any of its entries
	// does. Empty: every session of every route.
	Match Match `yaml:"match,omitempty"`
	// Per is what the budget is counted under: session, principal (within
	// its tenant: principal and tenant budgets survive re-initialize and
	// span sessions and replicas) or tenant. An anonymous caller's
	// principal budget is its client address's. Default session.
	Per string `yaml:"per,omitempty"`
	// Window is how long a budget lasts: 0, the session's lifetime (per:
	// session only), or a rolling window (1m, 1h, 24h; at least 1s) in
	// which usage leaves the count as it ages. Default 0.
	Window time.Duration `yaml:"window,omitempty"`
	// Requests caps every request the client sends. 0: no cap.
	Requests int64 `yaml:"requests,omitempty"`
	// ToolCalls caps tools/call requests. 0: no cap.
	ToolCalls int64 `yaml:"tool_calls,omitempty"`
	// Tools caps the calls of single tools, by name.
	Tools map[string]int64 `yaml:"tools,omitempty"`
	// ResultTokens caps the tokens of the text content flowing back to
	// the client (tool results, resource contents, prompt messages),
	// counted with Tokenizer. A result that would exceed it is withheld
	// and replaced by an error. 0: no cap (nothing is tokenized).
	ResultTokens int64 `yaml:"result_tokens,omitempty"`
	// ResultBytes caps the bytes of the results flowing back (every
	// response's result member): the cheap alternative to ResultTokens.
	ResultBytes int64 `yaml:"result_bytes,omitempty"`
	// CallTimeout bounds one request's round trip: on expiry the
	// upstream gets notifications/cancelled and the client an error
	// naming the quota. 0: the route's request_timeout only.
	CallTimeout time.Duration `yaml:"call_timeout,omitempty"`
	// SessionTime bounds a session's wall-clock life since it was
	// created: past it the session ends with reason quota (404
	// afterwards). 0: no bound beyond the session's TTL.
	SessionTime time.Duration `yaml:"session_time,omitempty"`
	// Concurrent caps the requests in flight at once per key. 0: no cap.
	Concurrent int64 `yaml:"concurrent,omitempty"`
	// WarnAt is the soft threshold, a fraction of each limit (0.8): the
	// first time usage reaches it the client gets one notifications/message
	// (level warning) naming the quota and its usage, and a quota_warning
	// event is logged. 0: no warning.
	WarnAt float64 `yaml:"warn_at,omitempty"`
	// Tokenizer counts ResultTokens: o200k_base, cl100k_base (both
	// embedded, nothing is downloaded) or bytes4 (bytes/4, rounded up).
	// Default o200k_base.
	Tokenizer string `yaml:"tokenizer,omitempty"`
}

// Retry is routes[].upstream.retry: how requests that are safe to repeat
// are sent again after a transient failure. Absent: no request is ever
// repeated by the upstream layer (the default). Present, every field
// left out takes the default named below, so `retry: {}` is the
// documented policy.
// Safe to repeat are discovery (server/discover, initialize), lists,
// reads, prompts, completions, ping, and tool calls the route's
// retry_tools lists or whose annotations (with trust_annotations) say
// readOnlyHint or idempotentHint. No other tool call is ever repeated,
// whatever failed; notifications and responses never are.
type Retry struct {
	// Attempts is how many times a request is sent in all, the first
	// included (1: never again). Default 3.
	Attempts int `yaml:"attempts,omitempty"`
	// Backoff is the delay before the first repeat; each later one
	// doubles it. Default 100ms.
	Backoff time.Duration `yaml:"backoff,omitempty"`
	// MaxBackoff caps one delay. Default 2s.
	MaxBackoff time.Duration `yaml:"max_backoff,omitempty"`
	// Jitter is full (each delay is uniform in [0, backoff]: clients that
	// failed together do not come back together) or none. Default full.
	Jitter string `yaml:"jitter,omitempty"`
	// Budget is the total deadline of a request and its repeats: no
	// repeat starts that could not finish within it, and the attempt in
	// flight is cut at it. Default 10s.
	Budget time.Duration `yaml:"budget,omitempty"`
	// On lists the failures that are repeated: connect (the connection
	// could not be made, or the process not started), reset (the
	// connection broke), timeout (a network timeout), and the upstream's
	// HTTP statuses 502, 503, 504 and 429. A Retry-After the upstream
	// sends with 429 or 503 is honoured (within the budget). Default all
	// of them.
	On []string `yaml:"on,omitempty"`
}

// Breaker is routes[].upstream.breaker: a circuit breaker over the
// route's upstream. Absent: no breaker (the default). Present, every
// field left out takes the default named below.
// Failures are transport failures, timeouts and 5xx answers; a tool
// result with isError, a JSON-RPC error and a 4xx are the server
// answering and count as successes. While open, every request to the
// upstream fails at once (HTTP 503, -32018) naming the upstream and when
// it will be tried again.
type Breaker struct {
	// FailureRatio opens the breaker when the failed share of the
	// requests in the window reaches it (0 < ratio ≤ 1). Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio,omitempty"`
	// MinRequests is how many requests the window must hold before the
	// ratio is considered. Default 20.
	MinRequests int `yaml:"min_requests,omitempty"`
	// Window is the rolling window requests are counted over. Default 30s.
	Window time.Duration `yaml:"window,omitempty"`
	// OpenFor is how long the breaker stays open before it lets probes
	// through (half-open). Default 15s.
	OpenFor time.Duration `yaml:"open_for,omitempty"`
	// HalfOpenRequests is how many probes a half-open breaker lets
	// through at once; that many successes in a row close it, one failure
	// opens it again. Default 3.
	HalfOpenRequests int `yaml:"half_open_requests,omitempty"`
}

// Health configures a route's upstream health checks (routes[].health).
// Without it the route is not checked, and counts as up.
type Health struct {
	// Interval is the time between two checks while the upstream is up;
	// while it is down, checks back off, doubling up to 8 intervals.
	// Default 15s. A stdio route spawns a process per check: never more
	// often than this.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Timeout bounds one check. Default 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// FailureThreshold is how many checks in a row must fail for an up
	// upstream to count as down. Default 3.
	FailureThreshold int `yaml:"failure_threshold,omitempty"`
	// SuccessThreshold is how many checks in a row must succeed for a
	// down upstream to count as up again. Default 1.
	SuccessThreshold int `yaml:"success_threshold,omitempty"`
}

// Telemetry configures OpenTelemetry traces: a server span per client
// request and a client span per upstream call, exported over OTLP. Without
// an endpoint (the default) no span is made.
type Telemetry struct {
	// OTLP is where spans are exported.
	OTLP struct {
		// Endpoint is the collector's URL or host:port. Empty: traces are off.
		Endpoint string `yaml:"endpoint,omitempty"`
		// Protocol is http/protobuf (the default) or grpc.
		Protocol string `yaml:"protocol,omitempty"`
		// Insecure sends without TLS (implied by an http:// endpoint).
		Insecure bool `yaml:"insecure,omitempty"`
		// Headers are sent with every export. Values are secrets: never logged.
		Headers map[string]string `yaml:"headers,omitempty"`
		// Timeout bounds one export. Default 10s.
		Timeout time.Duration `yaml:"timeout,omitempty"`
	} `yaml:"otlp,omitempty"`
	// ServiceName is the service.name resource attribute. Default "mcpgate".
	ServiceName string `yaml:"service_name,omitempty"`
	// SampleRatio is the share of new traces recorded, 0 to 1; a client's
	// sampled flag is followed. Default 1.
	SampleRatio *float64 `yaml:"sample_ratio,omitempty"`
}
