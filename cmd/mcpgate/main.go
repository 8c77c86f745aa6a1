// Command mcpgate is the MCP session gateway. See the cli package.
package main

import (
	"os"

	"github.com/mcpgate/mcpgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
