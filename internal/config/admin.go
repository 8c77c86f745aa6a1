package config

import (
	"fmt"
	"net"
	"strconv"
)

// Admin is the operator's listener: /metrics (Prometheus), /healthz
// (the process is alive) and /readyz (it can serve: listeners up, store
// reachable). It is separate from the client listeners so that it can
// stay on loopback, or a private network, while clients reach the others.
type Admin struct {
	// Listen is host:port. Empty (the default): no admin listener. A port
	// alone (":9090") binds loopback (127.0.0.1); binding elsewhere is an
	// explicit choice: name the address, e.g. 0.0.0.0:9090.
	Listen string `yaml:"listen"`
	// MCP serves the control plane as an MCP server at /mcp on the admin
	// listener. Default off.
	MCP AdminMCP `yaml:"mcp"`
	// ReadyRequires says which routes /readyz needs up: any (ready while
	// at least one route's upstream is up, the default) or all. Routes
	// without health checks count as up.
	ReadyRequires string `yaml:"ready_requires"`
}

// AdminMCP configures the admin MCP server: who may use it, with which
// role.
type AdminMCP struct {
	Enabled bool `yaml:"enabled"`
	// APIKeys are the operators' keys (Authorization: Bearer <key>),
	// stored as SHA-256 like auth.api_keys.
	APIKeys []AdminKey `yaml:"api_keys"`
	// RoleClaim, when set, also admits the OAuth access tokens the
	// top-level auth.oauth accepts, with the role this claim of the
	// token names (a string, or a list whose highest role counts). A
	// token without one of the roles in it is refused (403).
	RoleClaim string `yaml:"role_claim"`
}

// Roles of the admin MCP server, each including the one before.
const (
	RoleViewer   = "viewer"   // reads resources and lists
	RoleOperator = "operator" // also ends sessions and sets log levels
	RoleAdmin    = "admin"    // also applies and rolls back configuration
)

// AdminKey is one operator's key.
type AdminKey struct {
	// KeySHA256 is the hex SHA-256 of the key (`mcpgate key new` prints
	// one).
	KeySHA256 string `yaml:"key_sha256"`
	// Principal names the operator in history and logs. Default: "admin:"
	// and the first 8 characters of the hash.
	Principal string `yaml:"principal"`
	// Role is viewer, operator or admin. Required.
	Role string `yaml:"role"`
}

// adminDefaults binds a host-less admin address to loopback.
func (c *Config) adminDefaults() {
	if host, port, err := net.SplitHostPort(c.Admin.Listen); err == nil && host == "" {
		c.Admin.Listen = net.JoinHostPort("127.0.0.1", port)
	}
}

// validateAdmin checks admin.listen: a host:port with a numeric port,
// not one of the client listeners' addresses; and admin.mcp.
func (c *Config) validateAdmin(bad func(path, format string, args ...any)) {
	c.validateAdminMCP(bad)
	addr := c.Admin.Listen
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		bad("admin.listen", "want host:port, got %q", addr)
		return
	}
	if port == "0" {
		return
	}
	for i, l := range c.Listeners {
		if l.Address == addr {
			bad("admin.listen", "same address as listeners[%d]: the admin listener needs its own", i)
		}
	}
}

// validateAdminMCP checks admin.mcp: it needs the admin listener and at
// least one key; every key a hash, a role, and no hash twice.
func (c *Config) validateAdminMCP(bad func(path, format string, args ...any)) {
	m := c.Admin.MCP
	if !m.Enabled {
		if len(m.APIKeys) > 0 {
			bad("admin.mcp.enabled", "api_keys are set but the admin MCP server is off: write enabled: true")
		}
		return
	}
	if c.Admin.Listen == "" {
		bad("admin.mcp", "needs admin.listen: the admin MCP server is served there, at /mcp")
	}
	if len(m.APIKeys) == 0 && m.RoleClaim == "" {
		bad("admin.mcp.api_keys", "at least one key, or role_claim with the gateway's OAuth, is needed (mcpgate key new prints a key)")
	}
	if m.RoleClaim != "" && (c.Auth == nil || c.Auth.OAuth == nil) {
		bad("admin.mcp.role_claim", "needs the top-level auth.oauth: the operators' tokens are the gateway's OAuth access tokens")
	}
	seen := map[string]int{}
	for i, k := range m.APIKeys {
		p := fmt.Sprintf("admin.mcp.api_keys[%d]", i)
		checkKeyHash("admin.mcp", p, i, k.KeySHA256, seen, bad)
		switch k.Role {
		case RoleViewer, RoleOperator, RoleAdmin:
		case "":
			bad(p+".role", "required: viewer, operator or admin")
		default:
			bad(p+".role", "want viewer, operator or admin, got %q", k.Role)
		}
	}
}
