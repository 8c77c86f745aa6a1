package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultAddress           = "127.0.0.1:8080"
	DefaultMaxBodyBytes      = 4 << 20
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultKeepAlive         = 15 * time.Second
	DefaultStreamAfter       = 5 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultShutdownTimeout   = 15 * time.Second
	DefaultIdleTimeout       = 30 * time.Minute
	DefaultTTL               = 24 * time.Hour
	DefaultDataDir           = "mcpgate-data"
	DefaultMaxSessions       = 10000
	DefaultWhenFull          = "evict-idlest"
	DefaultMaxPerAddress     = 32
	DefaultResumeSession     = 1 << 20
	DefaultResumeTotal       = 64 << 20
	DefaultRequestTimeout    = 5 * time.Minute
	DefaultConnectTimeout    = 10 * time.Second
	DefaultResponseHeader    = 60 * time.Second
	DefaultMaxIdleConns      = 64
	DefaultShutdownGrace     = 5 * time.Second
	DefaultMaxMessageBytes   = 16 << 20
)

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return LoadBytes(data)
}

// LoadBytes is Load for an in-memory document. It reports every problem
// at once, decoding and semantic alike, each with its path and line, in
// the order of the file.
func LoadBytes(data []byte) (*Config, error) { return loadBytes(data, nil) }

// loadBytes is LoadBytes with fix, if set, run on the decoded
// configuration before defaults and validation.
func loadBytes(data []byte, fix func(*Config)) (*Config, error) {
	cfg, d, err := parse(data)
	if err != nil {
		return nil, err
	}
	if fix != nil {
		fix(cfg)
	}
	// Fields that failed to decode keep their zero value and get their
	// default, so the semantic checks can run on the rest; what they say
	// about a field that already has a decoding problem is left out.
	cfg.SetDefaults()
	problems := d.errs
	var verr *Error
	if errors.As(cfg.Validate(), &verr) {
		for _, e := range verr.Problems {
			p, ok := e.(*Problem)
			if !ok {
				problems = append(problems, e)
				continue
			}
			if overlaps(p.Path, d.broken) {
				continue
			}
			p.Line = lineOf(p.Path, d.lines)
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		return cfg, nil
	}
	slices.SortStableFunc(problems, func(a, b error) int {
		return cmp.Compare(problemLine(a), problemLine(b))
	})
	return nil, &Error{Problems: problems}
}

// lineOf finds path's line, or its closest ancestor's: a missing field
// is reported at the mapping that lacks it.
func lineOf(path string, lines map[string]int) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// overlaps reports whether path is, contains or is inside a path that
// already has a decoding problem.
func overlaps(path string, broken []string) bool {
	within := func(inner, outer string) bool {
		return inner == outer || strings.HasPrefix(inner, outer+".") || strings.HasPrefix(inner, outer+"[")
	}
	for _, b := range broken {
		if within(path, b) || within(b, path) {
			return true
		}
	}
	return false
}

// problemLine orders problems by line, those without one last.
func problemLine(e error) int {
	if p, ok := e.(*Problem); ok && p.Line > 0 {
		return p.Line
	}
	return math.MaxInt
}

// SetDefaults fills every unset field with its documented default.
func (c *Config) SetDefaults() {
	if len(c.Listeners) == 0 {
		c.Listeners = []Listener{{}}
	}
	for i := range c.Listeners {
		if c.Listeners[i].Address == "" {
			c.Listeners[i].Address = DefaultAddress
		}
	}
	c.adminDefaults()
	c.authDefaults()
	c.quotaDefaults()
	s := &c.Server
	setDur(&s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&s.ReadTimeout, DefaultReadTimeout)
	setDur(&s.KeepAlive, DefaultKeepAlive)
	setDur(&s.StreamAfter, DefaultStreamAfter)
	setDur(&s.WriteTimeout, DefaultWriteTimeout)
	setDur(&s.ShutdownTimeout, DefaultShutdownTimeout)
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = DefaultMaxConnections()
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Admin.ReadyRequires == "" {
		c.Admin.ReadyRequires = ReadyRequiresAny
	}
	ss := &c.Sessions
	setDur(&ss.IdleTimeout, DefaultIdleTimeout)
	setDur(&ss.TTL, DefaultTTL)
	if ss.Max == 0 {
		ss.Max = DefaultMaxSessions
	}
	if ss.WhenFull == "" {
		ss.WhenFull = DefaultWhenFull
	}
	for _, cp := range []*Cap{&ss.PerPrincipal, &ss.PerTenant} {
		if cp.WhenFull == "" {
			cp.WhenFull = "reject"
		}
	}
	if ss.PerAddress == nil {
		ss.PerAddress = &Cap{Max: DefaultMaxPerAddress}
	}
	if ss.PerAddress.WhenFull == "" {
		// Under its own cap an address can only give up its own sessions;
		// the idlest of them is the likeliest to be abandoned.
		ss.PerAddress.WhenFull = DefaultWhenFull
	}
	if ss.CreationRate.PerAddress == nil {
		ss.CreationRate.PerAddress = &Window{Limit: 120, Window: 10 * time.Second}
	}
	if ss.RequestRate.PerSecond > 0 && ss.RequestRate.Burst == 0 {
		ss.RequestRate.Burst = max(1, int(ss.RequestRate.PerSecond+0.999))
	}
	if ss.Resumption.SessionBytes == 0 {
		ss.Resumption.SessionBytes = DefaultResumeSession
	}
	if ss.Resumption.TotalBytes == 0 {
		ss.Resumption.TotalBytes = DefaultResumeTotal
	}
	if c.Store.Kind == "" {
		c.Store.Kind = StoreEmbedded
	}
	if c.Store.DataDir == "" {
		c.Store.DataDir = DefaultDataDir
	}
	setDur(&c.Store.FlushInterval, time.Second)
	if c.Store.OnUnavailable == "" {
		c.Store.OnUnavailable = "fail-closed"
	}
	c.auditDefaults()
	c.telemetryDefaults()
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Name == "" {
			r.Name = nameFromPath(r.Path)
		}
		setDur(&r.RequestTimeout, DefaultRequestTimeout)
		setDur(&r.IdleTimeout, c.Sessions.IdleTimeout)
		setDur(&r.TTL, c.Sessions.TTL)
		if r.WhenFull == "" {
			r.WhenFull = "reject"
		}
		if r.Upstream.Era == "" {
			r.Upstream.Era = EraAuto
		}
		if r.ClientEra == "" {
			r.ClientEra = EraAuto
		}
		if r.CacheHints.Scope == "" {
			r.CacheHints.Scope = CacheScopePrivate
		}
		if h := r.Upstream.HTTP; h != nil {
			setDur(&h.ConnectTimeout, DefaultConnectTimeout)
			setDur(&h.ResponseHeaderTimeout, DefaultResponseHeader)
			if h.MaxIdleConns == 0 {
				h.MaxIdleConns = DefaultMaxIdleConns
			}
		}
		if st := r.Upstream.Stdio; st != nil {
			setDur(&st.ShutdownGrace, DefaultShutdownGrace)
			if st.MaxMessageBytes == 0 {
				st.MaxMessageBytes = DefaultMaxMessageBytes
			}
			if st.Sandbox != nil {
				st.Sandbox.setDefaults()
			}
		}
		if cr := r.Upstream.Credentials; cr != nil {
			cr.setDefaults()
		}
		if rt := r.Upstream.Retry; rt != nil {
			rt.setDefaults()
		}
		if b := r.Upstream.Breaker; b != nil {
			b.setDefaults()
		}
		r.Upstream.setShareDefaults()
		if r.Health != nil {
			r.Health.setDefaults()
		}
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func nameFromPath(p string) string {
	n := strings.Trim(p, "/")
	n = strings.TrimSuffix(n, "/mcp")
	n = strings.TrimPrefix(n, "servers/")
	n = strings.ReplaceAll(n, "/", "-")
	if n == "" || n == "mcp" {
		return "default"
	}
	return n
}

// ParseTrustedProxy reads one listeners[].trusted_proxies entry: a CIDR,
// or an IP address (the prefix of that one address). A CIDR with bits set
// past its length (10.1.2.3/8) is refused: it is most likely a typo. Its
// error is a complete sentence for Validate's problem.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("want a CIDR (10.0.0.0/8, fd00::/8) or an IP address, got %q", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has address bits set past its prefix length; did you mean %s?", s, p.Masked())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("want a CIDR (10.0.0.0/8, fd00::/8) or an IP address, got %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Validate reports every problem at once, each with its field path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	addrs := map[string]bool{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			bad(p+".address", "want host:port, got %q", l.Address)
		}
		if addrs[l.Address] {
			bad(p+".address", "duplicate listener %q", l.Address)
		}
		addrs[l.Address] = true
		for j, o := range l.AllowedOrigins {
			if o == "*" {
				continue
			}
			if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
				bad(fmt.Sprintf("%s.allowed_origins[%d]", p, j), "want scheme://host[:port], got %q", o)
			}
		}
		for j, tp := range l.TrustedProxies {
			if _, err := ParseTrustedProxy(tp); err != nil {
				bad(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), "%v", err)
			}
		}
		if l.TLS != nil && (l.TLS.CertFile == "" || l.TLS.KeyFile == "") {
			bad(p+".tls", "cert_file and key_file are both required")
		}
	}
	c.validateAdmin(bad)
	c.validateObservability(bad)
	if c.Server.MaxBodyBytes < 1024 {
		bad("server.max_body_bytes", "must be at least 1KiB")
	}
	if c.Server.MaxConnections < 0 {
		bad("server.max_connections", "must not be negative")
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "want json or text, got %q", c.Log.Format)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	checkPolicy := func(path, p string) {
		switch p {
		case "reject", "evict-oldest", "evict-idlest":
		default:
			bad(path, "want reject, evict-oldest or evict-idlest, got %q", p)
		}
	}
	ss := c.Sessions
	if ss.Max < 0 {
		bad("sessions.max", "must not be negative")
	}
	checkPolicy("sessions.when_full", ss.WhenFull)
	checkPolicy("sessions.per_principal.when_full", ss.PerPrincipal.WhenFull)
	checkPolicy("sessions.per_tenant.when_full", ss.PerTenant.WhenFull)
	if pa := ss.PerAddress; pa != nil {
		if pa.Max < 0 {
			bad("sessions.per_address.max", "must not be negative")
		}
		checkPolicy("sessions.per_address.when_full", pa.WhenFull)
	}
	windows := map[string]Window{"global": ss.CreationRate.Global, "per_principal": ss.CreationRate.PerPrincipal}
	if ss.CreationRate.PerAddress != nil {
		windows["per_address"] = *ss.CreationRate.PerAddress
	}
	for name, w := range windows {
		if w.Limit < 0 || (w.Limit > 0 && w.Window <= 0) {
			bad("sessions.creation_rate."+name, "want a non-negative limit and, with a limit, a positive window")
		}
	}
	if ss.RequestRate.PerSecond < 0 || ss.RequestRate.Burst < 0 {
		bad("sessions.request_rate", "must not be negative")
	}
	for i, k := range ss.IDKeys {
		p := fmt.Sprintf("sessions.id_keys[%d]", i)
		if k.ID == "" {
			bad(p+".id", "required")
		}
		if msg := weakSecret(k.Secret.Reveal()); msg != "" {
			bad(p+".secret", "%s; generate one with: openssl rand -base64 48 (and keep it out of the file: secret: ${MCPGATE_ID_KEY})", msg)
		}
	}
	if ss.Resumption.TotalBytes < ss.Resumption.SessionBytes {
		bad("sessions.resumption.total_bytes", "must be at least session_bytes")
	}
	switch c.Store.Kind {
	case StoreEmbedded, StoreMemory, StoreRedis:
	default:
		bad("store.kind", "want embedded, memory or redis, got %q", c.Store.Kind)
	}
	switch c.Store.OnUnavailable {
	case "fail-closed", "fail-open":
	default:
		bad("store.on_unavailable", "want fail-closed or fail-open, got %q", c.Store.OnUnavailable)
	}
	if c.Store.Redis != nil && c.Store.Kind != StoreRedis {
		bad("store.redis", "set only with kind: redis")
	}
	if c.Store.Kind == StoreRedis && len(c.Sessions.IDKeys) == 0 {
		// Without signed ids every made-up id would cost a Redis look-up.
		bad("sessions.id_keys", "required with store kind redis: replicas must share signing keys")
	}
	c.validateCluster(bad)
	c.validateAuth(bad)
	c.validatePolicies(bad)
	c.validateQuotas(bad)
	c.validateAudit(bad)
	c.validateTelemetry(bad)
	if len(c.Routes) == 0 {
		bad("routes", "at least one route is required")
	}
	paths, names := map[string]bool{}, map[string]bool{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		switch {
		case r.Path == "":
			bad(p+".path", "required (e.g. /mcp)")
		case !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?#* \t") || strings.Contains(r.Path, "//"):
			bad(p+".path", "want an absolute path such as /mcp or /servers/name/mcp, got %q", r.Path)
		case paths[r.Path]:
			bad(p+".path", "duplicate path %q", r.Path)
		}
		paths[r.Path] = true
		if names[r.Name] {
			bad(p+".name", "duplicate route name %q", r.Name)
		}
		names[r.Name] = true
		checkPolicy(p+".when_full", r.WhenFull)
		if r.MaxSessions < 0 {
			bad(p+".max_sessions", "must not be negative")
		}
		switch r.ClientEra {
		case EraAuto, EraLegacy, EraModern:
		default:
			bad(p+".client_era", "want auto, legacy or modern, got %q", r.ClientEra)
		}
		if r.CacheHints.TTL < 0 {
			bad(p+".cache_hints.ttl", "must not be negative")
		}
		switch r.CacheHints.Scope {
		case CacheScopePrivate, CacheScopePublic:
		default:
			bad(p+".cache_hints.scope", "want private or public, got %q", r.CacheHints.Scope)
		}
		u := r.Upstream
		switch u.Era {
		case EraAuto, EraLegacy, EraModern:
		default:
			bad(p+".upstream.era", "want auto, legacy or modern, got %q", u.Era)
		}
		switch {
		case u.Embedded && (u.HTTP != nil || u.Stdio != nil):
			bad(p+".upstream", "an embedded server takes neither http nor stdio")
		case u.Embedded:
		case u.HTTP != nil && u.Stdio != nil:
			bad(p+".upstream", "set exactly one of http and stdio, not both")
		case u.HTTP == nil && u.Stdio == nil:
			bad(p+".upstream", "set exactly one of http and stdio")
		case u.HTTP != nil:
			pu, err := url.Parse(u.HTTP.URL)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				bad(p+".upstream.http.url", "want an http or https URL, got %q", u.HTTP.URL)
			}
			for k := range u.HTTP.Headers {
				switch strings.ToLower(k) {
				case "mcp-session-id", "mcp-protocol-version", "content-type", "accept", "content-length", "host", "last-event-id":
					bad(p+".upstream.http.headers."+k, "managed by mcpgate; cannot be set")
				}
			}
			if u.HTTP.TLS != nil && (u.HTTP.TLS.CertFile == "") != (u.HTTP.TLS.KeyFile == "") {
				bad(p+".upstream.http.tls", "cert_file and key_file go together")
			}
		case u.Stdio != nil:
			checkStdio(p+".upstream.stdio", u.Stdio, bad)
			checkSandbox(p+".upstream.stdio", u.Stdio, bad)
		}
		checkCredentials(p+".upstream", u, bad)
		checkResilience(p+".upstream", u, bad)
		checkShare(p+".upstream", u, bad)
	}
	if len(errs) > 0 {
		return &Error{Problems: errs}
	}
	return nil
}

// ForCommandLine builds the one-route configuration of
// `mcpgate serve --listen ADDR --stdio 'CMD ARGS' | --http URL`.
func ForCommandLine(listen, stdio, httpURL string) (*Config, error) {
	cfg := &Config{Listeners: []Listener{{Address: listen}}}
	route := Route{Name: "default", Path: "/mcp"}
	switch {
	case stdio != "" && httpURL != "":
		return nil, fmt.Errorf("config: --stdio and --http are exclusive")
	case stdio != "":
		argv, err := SplitCommand(stdio)
		if err != nil {
			return nil, err
		}
		route.Upstream.Stdio = &StdioUpstream{Command: argv[0], Args: argv[1:]}
	case httpURL != "":
		route.Upstream.HTTP = &HTTPUpstream{URL: httpURL}
	default:
		return nil, fmt.Errorf("config: give --config FILE, or --stdio 'COMMAND ARGS' or --http URL")
	}
	cfg.Routes = []Route{route}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// SplitCommand splits a command line into words the way a POSIX shell does
// for quotes and backslashes (no variables, globs or operators).
func SplitCommand(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("config: unterminated quote or escape in command %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("config: empty command")
	}
	return words, nil
}

// validateCluster checks the internal hop: needed only when a stdio
// session in a cluster may have to be reached on another replica.
func (c *Config) validateCluster(bad func(path, format string, args ...any)) {
	cl := c.Cluster
	if cl.Listen == "" {
		if cl.Advertise != "" {
			bad("cluster.advertise", "set only with cluster.listen")
		}
		if c.Store.Kind == StoreRedis {
			for i, r := range c.Routes {
				if r.Upstream.Stdio != nil {
					bad("cluster.listen", "required with store kind redis and a stdio route (routes[%d]): other replicas forward that route's sessions to the replica running its process", i)
					break
				}
				if r.Upstream.Embedded {
					bad("cluster.listen", "required with store kind redis and an embedded server: other replicas forward a session to the replica holding its server session")
					break
				}
			}
		}
		return
	}
	if c.Store.Kind != StoreRedis {
		bad("cluster.listen", "set only with store kind redis")
	}
	if _, _, err := net.SplitHostPort(cl.Listen); err != nil {
		bad("cluster.listen", "want host:port, got %q", cl.Listen)
	}
	if cl.Listen == c.Admin.Listen {
		bad("cluster.listen", "same address as admin.listen: the internal hop needs its own")
	}
	for i, l := range c.Listeners {
		if cl.Listen == l.Address {
			bad("cluster.listen", "same address as listeners[%d]: the internal hop needs its own", i)
		}
	}
	adv := cl.Advertise
	if adv == "" {
		adv = cl.Listen
	}
	host, port, err := net.SplitHostPort(adv)
	switch {
	case err != nil:
		bad("cluster.advertise", "want host:port, got %q", adv)
	case host == "" || host == "0.0.0.0" || host == "::":
		bad("cluster.advertise", "required when cluster.listen is a wildcard address: other replicas need an address to dial")
	case port == "0" && cl.Advertise != "":
		bad("cluster.advertise", "want a fixed port, got %q", adv)
	}
}

// EmbeddedRoute is the name and path of the one route of a library
// handler (LoadEmbedded).
const EmbeddedRoute = "embedded"

// LoadEmbedded is LoadBytes for the library's handler: the file names no
// listeners or routes (the embedding program owns those; naming them is an
// error), the store defaults to memory, and the one route is the embedded
// server's, at /mcp.
func LoadEmbedded(data []byte) (*Config, error) {
	var owned []string
	cfg, err := loadBytes(data, func(c *Config) {
		if len(c.Listeners) > 0 {
			owned = append(owned, "listeners")
		}
		if len(c.Routes) > 0 {
			owned = append(owned, "routes")
		}
		c.Listeners = nil
		c.Routes = []Route{{Name: EmbeddedRoute, Path: "/mcp", Upstream: Upstream{Embedded: true}}}
		if c.Store.Kind == "" {
			c.Store.Kind = StoreMemory
		}
	})
	if len(owned) > 0 {
		return nil, fmt.Errorf("config: %s: the embedding program serves the handler; leave them out", strings.Join(owned, " and "))
	}
	return cfg, err
}
