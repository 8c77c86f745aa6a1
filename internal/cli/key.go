package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate/internal/auth"
)

// keyEntry is one auth.api_keys entry as `key new` prints it.
type keyEntry struct {
	KeySHA256 string   `yaml:"key_sha256"`
	Principal string   `yaml:"principal"`
	Tenant    string   `yaml:"tenant,omitempty"`
	Groups    []string `yaml:"groups,omitempty"`
}

// newKeyCmd is `mcpgate key new`: a fresh API key on the first line of
// stdout (the only time it is shown: give it to the client), then the
// auth.api_keys entry that admits it, which holds only its SHA-256.
func newKeyCmd(stdout, stderr io.Writer) *cobra.Command {
	key := &cobra.Command{Use: "key", Short: "Manage API keys", Args: cobra.NoArgs}
	var entry keyEntry
	create := &cobra.Command{
		Use:   "new",
		Short: "Print a fresh API key and its auth.api_keys entry",
		Example: `  mcpgate key new --principal ci-bot --tenant acme --group ci
  # first line: the key, for the client (Authorization: Bearer <key>);
  # then the entry to add under auth.api_keys (it holds only the key's SHA-256)`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			k, err := auth.NewKey()
			if err != nil {
				return err
			}
			e := entry
			e.KeySHA256 = auth.HashKey(k)
			if e.Principal == "" {
				e.Principal = "key-" + e.KeySHA256[:12]
			}
			out, err := yaml.Marshal([]keyEntry{e})
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, k)
			_, _ = stdout.Write(out)
			fmt.Fprintln(stderr, "mcpgate: the key is shown once: give it to the client; add the entry under auth.api_keys (or a route's auth.api_keys)")
			return nil
		},
	}
	create.Flags().StringVar(&entry.Principal, "principal", "", "who the key stands for (default: key-<start of its SHA-256>)")
	create.Flags().StringVar(&entry.Tenant, "tenant", "", "the principal's tenant")
	create.Flags().StringArrayVar(&entry.Groups, "group", nil, "a group of the principal (repeatable)")
	key.AddCommand(create)
	return key
}
