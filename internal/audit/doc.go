// Package audit is the gateway's audit trail: one JSON record per message
// crossing the gateway in either direction, per session lifecycle event,
// per refusal before the chain (authentication failures and hijack
// refusals among them), per message the gateway makes itself, and per
// policy or quota decision a stage reports.
//
// Records are tamper-evident: each carries seq (one more than the record
// before), prev (the hash of the record before) and hash (the SHA-256 of
// its canonical JSON, see Parse). The chain continues across file
// rotation and restarts (New reads the last record back). Verify checks a
// set of files and names the first record that is edited, dropped,
// reordered or truncated; Query filters them.
//
// Delivery never blocks the data plane: each sink has a bounded in-memory
// queue; past it records go to the sink's spool on disk and are delivered
// later, in order. Only when the spool cannot be written (its disk is
// full) is a record dropped, counted (mcpgate_audit_dropped_total) and
// logged once per run of drops.
//
//	t, err := audit.New(audit.Options{
//		Payloads: true, RedactPaths: []string{"params.arguments.password"},
//		Sinks:    []audit.SinkOptions{{Sink: fileSink}}, SpoolDir: "audit/spool",
//	})
//	stage := t.Stage("github")            // the "audit" pipeline stage of a route
//	hooks := t.Hooks()                    // a session.Hooks subscriber
//	defer t.Close(ctx)
package audit
