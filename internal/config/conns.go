package config

// AdminMaxConnections caps the admin listener's open connections. It is
// its own budget, outside server.max_connections, so that /metrics and
// /healthz answer while the client listeners are full.
const AdminMaxConnections = 64

// fdReserve is set aside from the descriptor limit before it is shared:
// listeners, the store's file or Redis pool, logs, the process's own.
const fdReserve = 256

// DefaultMaxConnections derives server.max_connections from the limit on
// open files (RLIMIT_NOFILE, whose soft limit Go raises to the hard one
// at start): half of what is left after AdminMaxConnections and a fixed
// reserve, so the other half stays for what sessions open themselves
// (upstream connections, stdio pipes). At least 64. Without a limit to
// read, 4096.
func DefaultMaxConnections() int {
	n, ok := fdLimit()
	if !ok {
		return 4096
	}
	return max(64, (n-AdminMaxConnections-fdReserve)/2)
}

// FDLimit is the current limit on open files, when the platform has one.
func FDLimit() (int, bool) { return fdLimit() }
