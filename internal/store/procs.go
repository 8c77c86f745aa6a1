package store

import (
	"context"
	"strconv"
)

// Proc is a process a gateway spawned (a stdio server), recorded so that
// the gateway started after a crash can end what the crashed one left
// running. Pid, Pgid, Start (clock ticks after boot) and Boot (the
// kernel's boot id) identify it so that a pid given to another process
// since is never mistaken for it.
type Proc struct {
	Pid   int    `json:"pid"`
	Pgid  int    `json:"pgid"`
	Start uint64 `json:"start"`
	Boot  string `json:"boot"`
	// Gateway and GatewayStart identify the gateway process that spawned
	// it: while that gateway runs, the process is its own, not a leftover
	// (several gateways on one host may share a Redis).
	Gateway      int    `json:"gateway"`
	GatewayStart uint64 `json:"gateway_start"`
	Route        string `json:"route,omitempty"`
}

// Key names the record: the pid and start time, unique within a boot.
func (p Proc) Key() string {
	return strconv.Itoa(p.Pid) + "." + strconv.FormatUint(p.Start, 10)
}

// Procs is implemented by stores that record the processes gateways
// spawn. Records are grouped by host, the machine whose pids they name:
// a gateway lists its own host's records when it starts. PutProc and
// DeleteProc are durable when they return; deleting a missing record is
// not an error. ListProcs returns copies, in no particular order. All
// honour ctx and are safe for use by multiple goroutines; after Close
// they return ErrClosed.
type Procs interface {
	PutProc(ctx context.Context, host string, p Proc) error
	DeleteProc(ctx context.Context, host, key string) error
	ListProcs(ctx context.Context, host string) ([]Proc, error)
}
