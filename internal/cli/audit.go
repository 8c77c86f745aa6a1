package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/audit"
)

// newAuditCmd is `mcpgate audit verify|query FILE...`, over the files of
// an audit trail's file sink (the current one and the rotated ones, in
// any order).
func newAuditCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check and search audit trail files", Args: cobra.NoArgs}
	verify := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Check that audit files hold one unbroken chain of records",
		Long: "verify checks every record's hash against its content and its prev against the record before it, across the files\n" +
			"(taken in the order of their records, so rotated files may be given in any order). It prints the count and exits 0\n" +
			"when the chain is intact; otherwise it names the first record that was edited, dropped, reordered or truncated\n" +
			"and exits 1.",
		Example: `  mcpgate audit verify audit/audit*.jsonl`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, files []string) error {
			sum, err := audit.Verify(files)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "ok: %d records, seq %d to %d, head %s\n", sum.Records, sum.First, sum.Last, sum.Head)
			if sum.Anchor != "" {
				fmt.Fprintf(stdout, "the chain continues a record not in these files: prev %s\n", sum.Anchor)
			}
			return nil
		},
	}
	var (
		f     audit.Filter
		since string
	)
	query := &cobra.Command{
		Use:   "query FILE...",
		Short: "Print the audit records that match every filter given",
		Example: `  mcpgate audit query audit/audit*.jsonl --principal alice --tool deploy --since 1h
  mcpgate audit query audit/audit.jsonl --session 3f2a9c0d41be --since 2026-12-04T09:00:00Z`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, files []string) error {
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				f.Since = t
			}
			_, err := audit.Query(files, f, stdout)
			return err
		},
	}
	query.Flags().StringVar(&f.Session, "session", "", "a session: its id, or its fingerprint as records carry it")
	query.Flags().StringVar(&f.Principal, "principal", "", "the principal")
	query.Flags().StringVar(&f.Tool, "tool", "", "a tool (or a resource URI, or a prompt)")
	query.Flags().StringVar(&since, "since", "", "records from this long ago (1h, 30m) or this time (RFC 3339)")
	cmd.AddCommand(verify, query)
	return cmd
}

// parseSince reads --since: a duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration (1h, 30m) or an RFC 3339 time", s)
	}
	return t, nil
}
