// Package metrics owns mcpgate's Prometheus metrics: the gateway's own
// Registry (never the process-wide default one, so that two gateways in
// one process, or a library user's registry, do not collide), the
// process and Go runtime collectors, the /metrics handler, and the
// collectors of gateway-wide state — the session store's health
// (StoreMonitor) and what the replicas of a cluster fail to do for one
// another (ClusterMetrics).
//
// Every metric mcpgate defines starts with "mcpgate_" (Namespace). A
// capability that adds metrics takes a prometheus.Registerer — the
// gateway passes its *Registry — and registers its collectors when it is
// built, so a name clash fails at start (and in `mcpgate validate`), not
// at the first scrape:
//
//	reg := metrics.New()                      // process and Go collectors included
//	mon, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{Backend: "redis", Logger: log})
//	if err != nil { ... }                      // a collector already registered
//	go mon.Run(ctx, st)                        // pings st, reports up/down
//	mon.CountError("put")                      // where a failed store call is handled
//	mux.Handle("GET /metrics", reg.Handler())
//
// The session and request metrics (Traffic) and the upstreams' (Upstreams)
// follow the same shape: a constructor taking the Registerer, collectors
// created and registered once (a registry that holds them already lends
// its own, so a rebuilt chain counts into the same series), label values
// bound ahead of the hot path:
//
//	tr, err := metrics.NewTraffic(reg)
//	hooks := tr.Hooks()                       // to the session manager
//	stage := tr.Stage("github")               // the route's "metrics" pipeline stage
//	observe := tr.Refused                     // the gateway-wide observer of refusals
package metrics
