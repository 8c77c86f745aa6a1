// Package session owns gateway sessions: minting ids, the registry that
// maps an id to its session, activity tracking, idle expiry and the
// lifecycle hooks other parts of mcpgate subscribe to (logging now; audit,
// metrics and persistence later).
//
// A session is mcpgate's correlation unit for both protocol eras: the
// legacy era's Mcp-Session-Id, and for modern (2026-07-28) clients a key
// mcpgate issues in the Mcpgate-Session header.
//
//	m := session.NewManager(session.Options{Logger: log, Global: session.Cap{Max: 10000, Policy: session.EvictIdlest}})
//	res, err := m.Reserve(ctx, session.Admission{Route: "github", Principal: "alice"}) // caps, eviction
//	if err != nil { ... }                       // *session.CapError when a cap refuses
//	s, err := res.Commit(info, session.Limits{IdleTimeout: time.Minute}, closer, state)
//	defer s.Release(s.Acquire())                // an open stream keeps the session alive
//	m.End(ctx, s.ID(), session.ReasonDeleted)
package session
