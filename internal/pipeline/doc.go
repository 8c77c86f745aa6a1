// Package pipeline composes a route's stages into the one chain every
// message crossing the gateway passes, in either direction and either era.
//
// The one-pass rule: every message passes its route's chain exactly once.
// A client's requests (and their responses on the way back), notifications
// and answers nobody at the gateway waits for pass ClientToServer; a
// server's notifications and requests (and the client's answers on the way
// back) pass ServerToClient. What the gateway says on its own (the replay of
// initialize when an upstream session is re-established, the era bridge's
// own requests) and what it refuses before the chain runs reach the stages'
// observers as events (Event).
//
// The order is data, kept in one table (Order), nearest the client first:
// a client message meets the stages in that order, a server message in the
// reverse order, so the stage nearest the client is the same both ways. A
// stage that is not configured is absent from the chain and costs nothing.
//
// Stages report their decisions: a stage that decides about a message (a
// policy allowing, denying or redacting it; a quota counting or cutting it
// off) raises a Decided event through Env.Report, with the Stage, Policy,
// Rule, Quota, Action and Reason behind it. The gateway binds each route's
// Report (a Reporter) to the stages it builds for that route, so the event
// reaches the observers of the same chain — the audit trail records it:
//
//	env.Report(ctx, &pipeline.Event{Kind: pipeline.Decision, Session: m.Session, Message: m,
//		Stage: "policy", Policy: "prod-tools", Rule: "deny-delete", Action: "deny", Reason: "tool not allowed"})
//
// Stages have a lifecycle: the gateway builds them from the configuration
// (with the metrics registerer and the logger), a stage may keep state per
// session (Stage.Session, Stage.End, read with StateOf), and a retired chain
// closes its stages (Chain.Close).
//
//	chain, err := pipeline.Build("default", toServer, toClient, []pipeline.Stage{
//		{Name: "logging", Interceptor: logging.New(logger)},
//	})
//	resp, err := chain.ClientToServer(ctx, msg)
package pipeline
