package config

import (
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
}

// adminDefaults binds a host-less admin address to loopback.
func (c *Config) adminDefaults() {
	if host, port, err := net.SplitHostPort(c.Admin.Listen); err == nil && host == "" {
		c.Admin.Listen = net.JoinHostPort("127.0.0.1", port)
	}
}

// validateAdmin checks admin.listen: a host:port with a numeric port,
// not one of the client listeners' addresses.
func (c *Config) validateAdmin(bad func(path, format string, args ...any)) {
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
