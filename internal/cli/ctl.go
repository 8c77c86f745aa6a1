package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/gateway"
)

// ctlClient is `mcpgate ctl`'s connection to the admin MCP server.
type ctlClient struct {
	url, key string
	json     bool
	timeout  time.Duration
	stdout   io.Writer
}

// call calls tool with args on the admin endpoint and returns its
// structured content; a tool error becomes an error with its text.
func (c *ctlClient) call(ctx context.Context, tool string, args map[string]any) (json.RawMessage, error) {
	key := c.key
	if key == "" {
		key = os.Getenv("MCPGATE_ADMIN_KEY")
	}
	if key == "" {
		return nil, errors.New("no operator key: give --key or set MCPGATE_ADMIN_KEY")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hc := &http.Client{Transport: bearerTransport{key: key}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-ctl", Version: version()}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: c.url, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.url, err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tool, err)
	}
	if res.IsError {
		var msg []string
		for _, c := range res.Content {
			if t, ok := c.(*mcp.TextContent); ok {
				msg = append(msg, t.Text)
			}
		}
		return nil, fmt.Errorf("%s: %s", tool, strings.Join(msg, "\n"))
	}
	b, err := json.Marshal(res.StructuredContent)
	return b, err
}

type bearerTransport struct{ key string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// show prints raw as indented JSON with --json, else with human.
func (c *ctlClient) show(raw json.RawMessage, human func(json.RawMessage) error) error {
	if c.json || human == nil {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return human(raw)
}

func (c *ctlClient) run(tool string, args map[string]any, human func(json.RawMessage) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		raw, err := c.call(cmd.Context(), tool, args)
		if err != nil {
			return err
		}
		return c.show(raw, human)
	}
}

func newCtlCmd(stdout io.Writer) *cobra.Command {
	c := &ctlClient{stdout: stdout}
	ctl := &cobra.Command{
		Use:   "ctl",
		Short: "Drive a running gateway through its admin MCP server",
		Long: "ctl speaks MCP to the admin endpoint (admin.listen, path /mcp) with an operator key of\n" +
			"admin.mcp.api_keys; what it may do is the key's role.",
		Example: `  MCPGATE_ADMIN_KEY=mcpg_... mcpgate ctl sessions
  mcpgate ctl session end SESSION_ID
  mcpgate ctl config diff mcpgate.yaml && mcpgate ctl config apply mcpgate.yaml
  mcpgate ctl config history
  mcpgate ctl config rollback 3
  mcpgate ctl log-level gateway debug`,
		Args: cobra.NoArgs,
	}
	ctl.PersistentFlags().StringVar(&c.url, "url", "http://127.0.0.1:9180/mcp", "the admin MCP endpoint")
	ctl.PersistentFlags().StringVar(&c.key, "key", "", "operator key (default: $MCPGATE_ADMIN_KEY)")
	ctl.PersistentFlags().BoolVar(&c.json, "json", false, "print the tools' structured results as JSON")
	ctl.PersistentFlags().DurationVar(&c.timeout, "timeout", 30*time.Second, "give up after this long")

	var filter struct{ route, tenant, principal, era string }
	sessions := &cobra.Command{
		Use:   "sessions",
		Short: "List the live sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var all []map[string]any
			cursor := ""
			for {
				args := map[string]any{"route": filter.route, "tenant": filter.tenant, "principal": filter.principal, "era": filter.era}
				if cursor != "" {
					args["cursor"] = cursor
				}
				raw, err := c.call(cmd.Context(), "sessions_list", args)
				if err != nil {
					return err
				}
				var page struct {
					Sessions []map[string]any `json:"sessions"`
					Next     string           `json:"next_cursor"`
				}
				if err := json.Unmarshal(raw, &page); err != nil {
					return err
				}
				all = append(all, page.Sessions...)
				if cursor = page.Next; cursor == "" {
					break
				}
			}
			raw, _ := json.Marshal(map[string]any{"sessions": all, "total": len(all)})
			return c.show(raw, func(json.RawMessage) error {
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SESSION\tROUTE\tERA\tPRINCIPAL\tTENANT\tAGE\tIDLE")
				for _, s := range all {
					fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%v\t%s\t%s\n", s["session_id"], s["route"], s["era"], s["principal"], s["tenant"],
						seconds(s["age_seconds"]), seconds(s["idle_seconds"]))
				}
				return tw.Flush()
			})
		},
	}
	sessions.Flags().StringVar(&filter.route, "route", "", "only this route's sessions")
	sessions.Flags().StringVar(&filter.tenant, "tenant", "", "only this tenant's sessions")
	sessions.Flags().StringVar(&filter.principal, "principal", "", "only this principal's sessions")
	sessions.Flags().StringVar(&filter.era, "era", "", "legacy or modern")

	sess := &cobra.Command{Use: "session", Short: "One session", Args: cobra.NoArgs}
	sess.AddCommand(&cobra.Command{
		Use: "end ID", Short: "End a session", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run("session_end", map[string]any{"session_id": args[0]}, func(json.RawMessage) error {
				_, err := fmt.Fprintln(stdout, "ended", args[0])
				return err
			})(cmd, nil)
		},
	})

	cfg := &cobra.Command{Use: "config", Short: "The configuration in force, its history, and changes to it", Args: cobra.NoArgs}
	cfg.AddCommand(&cobra.Command{
		Use: "show", Short: "Print the configuration in force (secrets redacted)", Args: cobra.NoArgs,
		RunE: c.run("config_get", nil, func(raw json.RawMessage) error {
			var out struct {
				Version int    `json:"version"`
				YAML    string `json:"yaml"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			_, err := fmt.Fprintf(stdout, "# version %d\n%s", out.Version, out.YAML)
			return err
		}),
	})
	apply := func(dry bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			text, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			return c.run("config_apply", map[string]any{"yaml": string(text), "dry_run": dry}, printReport(stdout))(cmd, nil)
		}
	}
	cfg.AddCommand(&cobra.Command{Use: "diff FILE", Short: "Say what applying FILE would change, changing nothing", Args: cobra.ExactArgs(1), RunE: apply(true)})
	cfg.AddCommand(&cobra.Command{Use: "apply FILE", Short: "Apply FILE as a new version", Args: cobra.ExactArgs(1), RunE: apply(false)})
	cfg.AddCommand(&cobra.Command{
		Use: "history", Short: "List the versions applied", Args: cobra.NoArgs,
		RunE: c.run("config_history", nil, func(raw json.RawMessage) error {
			var out struct {
				Versions []gateway.ConfigVersion `json:"versions"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTIME\tWHO\tSOURCE\tCHANGES")
			for _, v := range out.Versions {
				src := v.Source
				if v.RollbackOf > 0 {
					src += " of " + strconv.Itoa(v.RollbackOf)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.Version, v.Time.Format(time.RFC3339), v.Who, src, strings.Join(v.Changes, "; "))
			}
			return tw.Flush()
		}),
	})
	cfg.AddCommand(&cobra.Command{
		Use: "rollback N", Short: "Apply version N again, as a new version", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil {
				return fmt.Errorf("version: %w", err)
			}
			return c.run("config_rollback", map[string]any{"version": n}, printReport(stdout))(cmd, nil)
		},
	})

	health := &cobra.Command{
		Use: "health", Short: "The gateway's readiness", Args: cobra.NoArgs,
		RunE: c.run("health_check", nil, nil),
	}
	level := &cobra.Command{
		Use: "log-level COMPONENT LEVEL", Short: "Set the log level (COMPONENT: gateway, for the whole gateway)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run("log_level_set", map[string]any{"component": args[0], "level": args[1]}, func(raw json.RawMessage) error {
				var out struct{ Level, Previous string }
				if err := json.Unmarshal(raw, &out); err != nil {
					return err
				}
				_, err := fmt.Fprintf(stdout, "log level %s (was %s)\n", out.Level, out.Previous)
				return err
			})(cmd, nil)
		},
	}
	ctl.AddCommand(sessions, sess, cfg, health, level)
	return ctl
}

// printReport prints an apply's report for people.
func printReport(w io.Writer) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var r gateway.ApplyReport
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		switch {
		case r.DryRun && r.Outcome == "unchanged":
			fmt.Fprintln(w, "no change")
		case r.DryRun:
			fmt.Fprintln(w, "would apply:")
		case r.Outcome == "unchanged":
			fmt.Fprintln(w, "unchanged: nothing applied")
		default:
			fmt.Fprintf(w, "applied as version %d:\n", r.Version)
		}
		for _, ch := range r.Changes {
			fmt.Fprintln(w, "  "+ch)
		}
		for route, n := range r.SessionsAffected {
			fmt.Fprintf(w, "  %d session(s) of route %s end\n", n, route)
		}
		return nil
	}
}

// seconds prints a JSON number of seconds as a rounded duration.
func seconds(v any) string {
	f, _ := v.(float64)
	return (time.Duration(f) * time.Second).Round(time.Second).String()
}
