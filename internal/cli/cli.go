package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/logs"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1.2.3".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "mcpgate:", err)
		return 1
	}
	return 0
}

type sources struct {
	configPath, listen, stdio, http string
	dataDir, storeKind              string
	clusterListen                   string
	// listenSet: --listen was given explicitly.
	listenSet bool
	// adminListen overrides admin.listen, so that replicas sharing one
	// file each get their own admin address.
	adminListen string
}

func (s *sources) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&s.configPath, "config", "c", "", "configuration file (YAML)")
	// No flag default: 127.0.0.1:8080 applies only without --config (with
	// it, the file's listeners do), and a default shown in --help would
	// claim otherwise.
	cmd.Flags().StringVar(&s.listen, "listen", "", "listen address: with --stdio or --http, default "+config.DefaultAddress+"; with --config, replaces the file's listeners (default: the file's)")
	cmd.Flags().StringVar(&s.stdio, "stdio", "", "serve one route at /mcp in front of this command (e.g. 'npx server-everything')")
	cmd.Flags().StringVar(&s.http, "http", "", "serve one route at /mcp in front of this Streamable HTTP URL")
	cmd.Flags().StringVar(&s.dataDir, "data-dir", "", "directory of the embedded session store (overrides store.data_dir; default ./"+config.DefaultDataDir+")")
	cmd.Flags().StringVar(&s.storeKind, "store", "", "session store: embedded, memory or redis (overrides store.kind)")
	cmd.Flags().StringVar(&s.adminListen, "admin-listen", "", "admin listener for /metrics, /healthz and /readyz, e.g. 127.0.0.1:9180 (overrides admin.listen)")
	cmd.Flags().StringVar(&s.clusterListen, "cluster-listen", "", "internal address other replicas forward to (overrides cluster.listen)")
}

// load builds the configuration: the file's (its text returned too) or
// the command line's, with the flags that override it applied.
func (s *sources) load() (*config.Config, []byte, error) {
	if s.configPath == "" {
		cfg, err := config.ForCommandLine(s.listen, s.stdio, s.http)
		if err != nil {
			return nil, nil, err
		}
		cfg, err = s.override(cfg)
		return cfg, nil, err
	}
	if s.stdio != "" || s.http != "" {
		return nil, nil, errors.New("--config excludes --stdio and --http")
	}
	text, err := os.ReadFile(s.configPath)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := s.parse(text, nil)
	return cfg, text, err
}

// parse turns a configuration text into the configuration the gateway
// runs with: secrets written REDACTED taken from prev, the flags applied.
func (s *sources) parse(text []byte, prev *config.Config) (*config.Config, error) {
	cfg, err := config.LoadBytesOver(text, prev)
	if err != nil {
		return nil, err
	}
	return s.override(cfg)
}

// override applies the flags that replace settings of the file.
func (s *sources) override(cfg *config.Config) (*config.Config, error) {
	if s.configPath != "" && s.listenSet {
		// One file for several replicas on one host: each gets its address.
		cfg.Listeners = cfg.Listeners[:1]
		cfg.Listeners[0].Address = s.listen
	}
	if s.dataDir != "" {
		cfg.Store.DataDir = s.dataDir
	}
	if s.adminListen != "" {
		cfg.Admin.Listen = s.adminListen
		cfg.SetDefaults() // a port alone binds loopback
	}
	if s.clusterListen != "" {
		cfg.Cluster.Listen = s.clusterListen
	}
	if s.storeKind != "" {
		cfg.Store.Kind = s.storeKind
	}
	if s.storeKind != "" || s.clusterListen != "" || s.adminListen != "" || (s.configPath != "" && s.listenSet) {
		// What the flags changed is checked like the file (a --listen
		// beyond loopback needs auth, as listeners[].address does).
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// overrideOptions applies the flags that replace settings of the file to
// every configuration mcpgate.Run reads, as override does to the first.
func (s *sources) overrideOptions(o *mcpgate.Options) {
	if s.listenSet {
		// One file for several replicas on one host: each gets its address.
		var l mcpgate.Listener
		if len(o.Listeners) > 0 {
			l = o.Listeners[0]
		}
		l.Address = s.listen
		o.Listeners = []mcpgate.Listener{l}
	}
	if s.dataDir != "" {
		o.Store.DataDir = s.dataDir
	}
	if s.adminListen != "" {
		o.Admin.Listen = s.adminListen
	}
	if s.clusterListen != "" {
		o.Cluster.Listen = s.clusterListen
	}
	if s.storeKind != "" {
		o.Store.Kind = s.storeKind
	}
}

// mirror fills the library's options with a configuration built here (the
// command line's one route).
func mirror(cfg *config.Config, o *mcpgate.Options) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return yaml.Unmarshal(b, o)
}

// newLogger makes the gateway's logger at the configuration's level,
// held in level so that the control plane can change it, with the levels
// of log.levels for single components (their loggers carry a component
// attribute, logs.Key); logs.LevelsOf finds those levels again.
func newLogger(cfg *config.Config, w io.Writer, level *slog.LevelVar) *slog.Logger {
	level.Set(cfg.Log.SlogLevel())
	log, _ := logs.New(w, cfg.Log.Format, level, cfg.Log.Levels, config.Components)
	return log
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "mcpgate",
		Short:         "mcpgate is a session gateway for MCP servers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)

	var serveSrc sources
	var watch bool
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Example: `  mcpgate serve --config mcpgate.yaml
  mcpgate serve --listen 127.0.0.1:8080 --stdio 'go run ./examples/echo-server'
  mcpgate serve --http https://mcp.example.com/mcp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			serveSrc.listenSet = cmd.Flags().Changed("listen")
			cfg, _, err := serveSrc.load()
			if err != nil {
				return err
			}
			// The binary is a user of the library: mcpgate.Run is serve.
			level := new(slog.LevelVar)
			log := newLogger(cfg, stderr, level)
			opts := &mcpgate.Options{}
			if serveSrc.configPath != "" {
				opts.File, opts.Watch, opts.Override = serveSrc.configPath, watch, serveSrc.overrideOptions
			} else if err := mirror(cfg, opts); err != nil {
				return err
			}
			opts.Logger, opts.LogLevel = log, level
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info("mcpgate_starting", "version", version())
			return mcpgate.Run(ctx, opts)
		},
	}
	serveSrc.register(serve)
	serve.Flags().BoolVar(&watch, "watch", true, "reload the configuration when its file changes (SIGHUP always reloads)")

	var validateSrc sources
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Load and build the configuration exactly as serve does, without listening",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			validateSrc.listenSet = cmd.Flags().Changed("listen")
			cfg, _, err := validateSrc.load()
			if err != nil {
				return err
			}
			gw, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return err
			}
			gw.Close()
			fmt.Fprintf(stdout, "configuration OK: %d listener(s), %d route(s)\n", len(cfg.Listeners), len(cfg.Routes))
			return nil
		},
	}
	validateSrc.register(validate)

	ver := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Fprintln(stdout, "mcpgate", version())
		},
	}
	root.AddCommand(serve, validate, ver, newKeyCmd(stdout, stderr), newCtlCmd(stdout), newAuditCmd(stdout))
	root.SetContext(context.Background())
	return root
}
