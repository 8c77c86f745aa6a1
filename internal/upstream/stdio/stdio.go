package stdio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

var (
	_ upstream.Upstream = (*Upstream)(nil)
	_ upstream.Conn     = (*Conn)(nil)
)

const (
	// defaultProbeTimeout bounds the wait for a server/discover answer;
	// legacy servers may never answer an unknown pre-initialize request.
	defaultProbeTimeout = 5 * time.Second
	// ClientVersion is the clientInfo.version mcpgate reports when it
	// probes a server.
	ClientVersion = "0.1.0"
)

// Defaults for zero Options values.
const (
	DefaultShutdownGrace   = 5 * time.Second
	DefaultMaxMessageBytes = 16 << 20
)

// Options configure New. The gateway translates its configuration into
// them; this package knows nothing of the configuration file.
type Options struct {
	// Command is the executable (looked up in PATH as exec.Command does).
	Command string
	// Args are its arguments.
	Args []string
	// Env adds variables to the process's environment. Values may be
	// secrets: they are never logged (Options logs them as REDACTED).
	Env map[string]string
	// InheritEnv passes mcpgate's whole environment to the process; false
	// passes only PATH, HOME, LANG, TMPDIR and TZ, plus Env.
	InheritEnv bool
	// Dir is the working directory; empty means mcpgate's.
	Dir string
	// ShutdownGrace is how long to wait after closing stdin, and again
	// after SIGTERM, before escalating. Zero means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// MaxMessageBytes bounds one line the process writes. Zero means
	// DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// Tap sees the messages a Conn originates itself (see upstream.Tap):
	// notifications/cancelled for abandoned requests, the probe's
	// server/discover and Conn.Ping, and the answers to those requests.
	// Nil is off.
	Tap upstream.Tap
	// Sandbox, when set, confines every process (see Sandbox); check it
	// with CheckSandbox first. Nil: a process group of its own and the
	// environment above, nothing more.
	Sandbox *Sandbox
	// Credential, when set, puts the session principal's own credential
	// in the environment variable Credential.Name of the session's
	// process (an Env entry of that name is dropped). A process serves
	// one session, so one principal; the probe's process gets its
	// caller's (upstream.CallerOf) and serves, as the spare, only a
	// session of the same principal. A principal without one gets the
	// Credential's error from Open. Nil is off.
	Credential upstream.Credential
}

// LogValue keeps Env's values out of logs.
func (o Options) LogValue() slog.Value {
	env := make([]string, 0, len(o.Env))
	for k := range o.Env {
		env = append(env, k)
	}
	sort.Strings(env)
	return slog.GroupValue(
		slog.String("command", o.Command), slog.Any("args", o.Args), slog.Any("env_keys", env),
		slog.Bool("inherit_env", o.InheritEnv), slog.String("dir", o.Dir),
		slog.Duration("shutdown_grace", o.ShutdownGrace), slog.Int64("max_message_bytes", o.MaxMessageBytes),
		slog.Any("sandbox", o.Sandbox))
}

// allowedEnv are the variables of mcpgate's environment a process gets
// when InheritEnv is false.
var allowedEnv = []string{"PATH", "HOME", "LANG", "TMPDIR", "TZ"}

// Upstream is a configured stdio server: every Open spawns a fresh process.
// It is safe for concurrent use.
type Upstream struct {
	cfg    Options
	route  string
	logger *slog.Logger
	env    []string
	// self is the executable a sandboxed process starts as (Sandbox).
	self string

	probeTimeout time.Duration
	spareTTL     time.Duration
	probeSem     chan struct{} // one probe at a time; waiters honour ctx
	probeMu      sync.Mutex    // guards probed and info
	probed       bool
	info         upstream.Info
	spare        *Conn       // the probe's process, for the first Open; guarded by probeMu
	spareTimer   *time.Timer // ends an unclaimed spare

	rec    atomic.Pointer[recorderBox]
	closed atomic.Bool

	// The sampler of the memory and CPU caps (caps.go), made on first use.
	capInterval, cpuWindow time.Duration
	sampOnce               sync.Once
	samp                   *sampler
}

// New returns the upstream for one route. Zero ShutdownGrace and
// MaxMessageBytes take the defaults (5s, 16 MiB); a nil logger discards.
// The environment is computed here, from mcpgate's environment at this
// moment.
func New(cfg Options, route string, logger *slog.Logger) *Upstream {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.Credential != nil && cfg.Env != nil {
		env := make(map[string]string, len(cfg.Env))
		for k, v := range cfg.Env {
			if k != cfg.Credential.Name() {
				env[k] = v
			}
		}
		cfg.Env = env
	}
	u := &Upstream{
		cfg:          cfg,
		route:        route,
		logger:       logger,
		env:          buildEnv(cfg),
		probeTimeout: defaultProbeTimeout,
		spareTTL:     defaultSpareTTL,
		probeSem:     make(chan struct{}, 1),
		capInterval:  defaultCapInterval,
		cpuWindow:    defaultCPUWindow,
	}
	if sb := cfg.Sandbox; sb != nil {
		u.self, _ = os.Executable() // CheckSandbox reports a failure
		if sb.Filesystem != nil && landlockABI() < 1 {
			logger.Warn("sandbox_landlock_unavailable", "route", route, "require", sb.Filesystem.Require,
				"detail", "the kernel has no Landlock: processes run without the file-system restriction; rlimits and no_new_privs still apply")
		}
		if sb.capped() {
			how, detail := capState()
			logger.Info("sandbox_caps", "route", route, "memory", sb.Memory, "cpu", sb.CPU, "enforced_by", how, "detail", detail)
		}
	}
	return u
}

// buildEnv is the child's environment: mcpgate's (whole, or only the
// allowed variables) followed by cfg.Env in key order. exec.Cmd keeps the
// last value of a duplicated key, so cfg.Env wins.
func buildEnv(cfg Options) []string {
	var env []string
	if cfg.InheritEnv {
		env = os.Environ()
	} else {
		for _, k := range allowedEnv {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	keys := make([]string, 0, len(cfg.Env))
	for k := range cfg.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+cfg.Env[k])
	}
	return env
}

// Open spawns the process for one gateway session. ctx only bounds the
// start; the process lives until Conn.Close or its own exit. A nil sink
// drops what the process sends outside any request.
func (u *Upstream) Open(ctx context.Context, p upstream.OpenParams, sink upstream.Sink) (upstream.Conn, error) {
	if u.closed.Load() {
		return nil, fmt.Errorf("stdio: open: %w", upstream.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if sink == nil {
		sink = discardSink{u.logger}
	}
	sid := ""
	if p.Session != nil {
		sid = p.Session.ID
	}
	env, owner, err := u.credentialEnv(ctx, p.Session)
	if err != nil {
		return nil, err
	}
	if c := u.takeSpareFor(p.Era, owner); c != nil && c.adopt(p.Session, sid, p.Era, sink) {
		return c, nil
	}
	c, err := u.start(p.Session, sid, p.Era, sink, env, owner)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// credentialEnv is the environment of a process for session s (or, with
// no session, the ctx's caller): the route's, plus the principal's own
// credential when the route has per-principal credentials; owner then
// names the principal the process may serve.
func (u *Upstream) credentialEnv(ctx context.Context, s *core.SessionInfo) (env []string, owner string, err error) {
	if u.cfg.Credential == nil {
		return u.env, "", nil
	}
	v, err := u.cfg.Credential.Value(ctx, s)
	if err != nil {
		return nil, "", err
	}
	switch c := upstream.CallerOf(ctx); {
	case s != nil:
		owner = s.Principal + "\x00" + s.Tenant
	case c != nil:
		owner = c.Principal + "\x00" + c.Tenant
	}
	env = append(u.env[:len(u.env):len(u.env)], u.cfg.Credential.Name()+"="+v)
	return env, owner, nil
}

// Close stops new Opens and Probes. Conns already open belong to their
// sessions, which close them.
func (u *Upstream) Close() error {
	u.closed.Store(true)
	if c := u.takeSpare(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*u.cfg.ShutdownGrace+time.Second)
		defer cancel()
		_ = c.Close(ctx)
	}
	return nil
}

// Probe finds out once whether the server speaks the modern era, by
// sending server/discover to a process that then serves the next Open
// (see spare.go), so probing costs no process of its own.
// Concurrent callers wait for the one probe. A process that cannot start,
// or exits before answering, is an error and is not cached; no answer
// within 5s or an error that is not a modern version error means legacy.
func (u *Upstream) Probe(ctx context.Context) (upstream.Info, error) {
	if info, ok := u.cached(); ok {
		return info, nil
	}
	select {
	case u.probeSem <- struct{}{}:
	case <-ctx.Done():
		return upstream.Info{}, ctx.Err()
	}
	defer func() { <-u.probeSem }()
	if info, ok := u.cached(); ok {
		return info, nil
	}
	if u.closed.Load() {
		return upstream.Info{}, fmt.Errorf("stdio: probe: %w", upstream.ErrClosed)
	}
	info, err := u.probe(ctx)
	if err != nil {
		return upstream.Info{}, err
	}
	u.probeMu.Lock()
	u.info, u.probed = info, true
	u.probeMu.Unlock()
	return cloneInfo(info), nil
}

// Probed returns what Probe learned, and false if it has not run: a
// caller that can do without the era (a legacy client's initialize tells
// it) need not make a probe start a process.
func (u *Upstream) Probed() (upstream.Info, bool) { return u.cached() }

func (u *Upstream) cached() (upstream.Info, bool) {
	u.probeMu.Lock()
	defer u.probeMu.Unlock()
	return cloneInfo(u.info), u.probed
}

func cloneInfo(i upstream.Info) upstream.Info {
	i.ModernVersions = slices.Clone(i.ModernVersions)
	return i
}

// discoverParams is what the probe sends: the modern version mcpgate
// prefers, no client capabilities, and its identity.
var discoverParams = func() []byte {
	b, err := json.Marshal(map[string]any{"_meta": map[string]any{
		core.MetaProtocolVersion:    core.Version20260728,
		core.MetaClientCapabilities: map[string]any{},
		core.MetaClientInfo:         map[string]string{"name": "mcpgate", "version": ClientVersion},
	}})
	if err != nil {
		panic(err)
	}
	return b
}()

func (u *Upstream) probe(ctx context.Context) (upstream.Info, error) {
	env, owner, err := u.credentialEnv(ctx, nil)
	if err != nil {
		return upstream.Info{}, err
	}
	c, err := u.start(nil, "probe", core.EraModern, discardSink{u.logger}, env, owner)
	if err != nil {
		return upstream.Info{}, err
	}
	keep := false
	defer func() {
		if keep {
			u.keepSpare(c)
			return
		}
		// Within the caller's ctx; if that ends first, the shutdown
		// carries on in the background and still reaps the process.
		_ = c.Close(ctx)
	}()
	pctx, cancel := context.WithTimeout(ctx, u.probeTimeout)
	defer cancel()
	resp, err := c.call(pctx, "server/discover", discoverParams)
	var info upstream.Info
	switch {
	case err == nil:
		info = discoverOutcome(resp)
	case ctx.Err() != nil:
		return upstream.Info{}, fmt.Errorf("stdio: probe: %w", ctx.Err())
	case errors.Is(err, context.DeadlineExceeded):
		u.logger.Info("stdio_probe_timeout", "route", u.route, "timeout", u.probeTimeout)
		info = upstream.Info{Era: core.EraLegacy}
	default:
		return upstream.Info{}, fmt.Errorf("stdio: probe: %w", err)
	}
	u.logger.Info("stdio_probe", "route", u.route, "era", info.Era.String(), "modern_versions", info.ModernVersions)
	keep = true
	return info, nil
}

// discoverOutcome reads the answer to server/discover. A result is modern
// unless its supportedVersions lists only legacy revisions (a dual-era
// server whose transport cannot serve the modern era); one without the
// member is taken to support the version the probe asked for. The
// UnsupportedProtocolVersion error is modern only if data.supported names
// a modern revision. Anything else is legacy.
func discoverOutcome(resp *core.Message) upstream.Info {
	legacy := upstream.Info{Era: core.EraLegacy}
	switch resp.Kind {
	case core.KindResponse:
		var r struct {
			SupportedVersions *[]string `json:"supportedVersions"`
		}
		if json.Unmarshal(resp.Result, &r) != nil {
			return legacy
		}
		if r.SupportedVersions == nil {
			return upstream.Info{Era: core.EraModern, ModernVersions: []string{core.Version20260728}}
		}
		if mv := modernOnly(*r.SupportedVersions); len(mv) > 0 {
			return upstream.Info{Era: core.EraModern, ModernVersions: mv}
		}
	case core.KindError:
		var e struct {
			Code int `json:"code"`
			Data struct {
				Supported []string `json:"supported"`
			} `json:"data"`
		}
		if json.Unmarshal(resp.Error, &e) != nil || e.Code != core.CodeUnsupportedProtocolVersion {
			return legacy
		}
		if mv := modernOnly(e.Data.Supported); len(mv) > 0 {
			return upstream.Info{Era: core.EraModern, ModernVersions: mv}
		}
	}
	return legacy
}

// modernOnly keeps the modern revisions: the ones mcpgate knows, and
// unknown ones dated after the first modern revision (a newer server).
func modernOnly(versions []string) []string {
	var out []string
	for _, v := range versions {
		switch core.EraOf(v) {
		case core.EraModern:
			out = append(out, v)
		case core.EraUnknown:
			if isDate(v) && v > core.Version20260728 {
				out = append(out, v)
			}
		}
	}
	return out
}

func isDate(v string) bool {
	_, err := time.Parse(time.DateOnly, v)
	return err == nil
}

// discardSink drops what a process sends outside any request: the probe's
// and, defensively, an Open without a Sink.
type discardSink struct{ log *slog.Logger }

func (s discardSink) Deliver(m *core.Message) {
	s.log.Debug("stdio_message_dropped", "method", m.Method)
}
func (discardSink) Closed(error) {}

// start spawns the process with env and its reader goroutines; owner is
// the principal its environment is for ("" without credentials).
func (u *Upstream) start(sess *core.SessionInfo, sid string, era core.Era, sink upstream.Sink, env []string, owner string) (*Conn, error) {
	var cmd *exec.Cmd
	if u.cfg.Sandbox != nil {
		var err error
		if cmd, err = u.sandboxCmd(env); err != nil {
			u.logger.Warn("stdio_spawn_failed", "route", u.route, "session", core.Fingerprint(sid), "principal", sess.LogPrincipal(), "command", u.cfg.Command, "error", err)
			return nil, fmt.Errorf("stdio: start %s: %w", u.cfg.Command, err)
		}
	} else {
		cmd = exec.Command(u.cfg.Command, u.cfg.Args...)
		cmd.Env = env
	}
	cmd.Dir = u.cfg.Dir
	cmd.SysProcAttr = sysProcAttr()

	// Our own pipes (not Cmd.StdoutPipe): the child gets the fds directly,
	// so Wait starts no copying goroutines and closes nothing we still read.
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("stdio: %w", err)
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("stdio: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("stdio: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	caps := u.prepareCaps(cmd)
	if err := startCmd(cmd); err != nil {
		closeAll()
		if caps.startFailed(err) {
			u.logger.Warn("stdio_cgroup_failed", "route", u.route, "error", err,
				"detail", "the kernel cannot start a process in a cgroup: processes are capped by sampling from now on")
			return u.start(sess, sid, era, sink, env, owner)
		}
		u.logger.Warn("stdio_spawn_failed", "route", u.route, "session", core.Fingerprint(sid), "principal", sess.LogPrincipal(), "command", u.cfg.Command, "error", err)
		return nil, fmt.Errorf("stdio: start %s: %w", u.cfg.Command, err)
	}
	// The child holds its ends now.
	_ = inR.Close()
	_ = outW.Close()
	_ = errW.Close()

	pid := cmd.Process.Pid
	log := u.logger.With("route", u.route, "session", core.Fingerprint(sid), "principal", sess.LogPrincipal(), "pid", pid)
	log.Info("stdio_spawn", "command", u.cfg.Command, "args", u.cfg.Args, "dir", u.cfg.Dir, "sandbox", u.cfg.Sandbox)

	c := &Conn{
		up:         u,
		owner:      owner,
		cmd:        cmd,
		pid:        pid,
		stdin:      inW,
		stdout:     outR,
		stderr:     errR,
		grace:      u.cfg.ShutdownGrace,
		maxLine:    int(u.cfg.MaxMessageBytes),
		idPrefix:   `"mcpgate-` + randomHex() + "-",
		wsem:       make(chan struct{}, 1),
		dead:       make(chan struct{}),
		finished:   make(chan struct{}),
		stdoutDone: make(chan struct{}),
		stderrDone: make(chan struct{}),
		caps:       caps,
		stderrLog:  rate.NewLimiter(stderrRate, stderrBurst),
	}
	c.bound.Store(&binding{log: log, sess: sess, era: era, sink: sink})
	if rec := u.recorder(); rec != nil {
		// Read before the wait starts: until it is reaped, the pid is ours.
		if p, err := identify(pid); err == nil {
			c.proc, c.rec = p, rec
			rec.Spawned(p)
		}
	}
	caps.started(c)
	go c.readStdout()
	go c.readStderr()
	go c.wait()
	return c, nil
}
