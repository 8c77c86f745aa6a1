// Package gateway assembles a running mcpgate from a configuration: one
// upstream per route, the session manager, the frontend with each route's
// interceptor chain, and an HTTP server per listener. It is what the
// `serve` command runs and what library users embed.
//
//	gw, err := gateway.New(cfg, gateway.Options{Logger: log})
//	if err != nil { ... }          // validate stops here
//	err = gw.Run(ctx)              // listens until ctx ends, then drains
package gateway
