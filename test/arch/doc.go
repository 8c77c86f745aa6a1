// Package arch checks the shape of the module: imports point one way,
// command → admin → gateway → frontend → (pipeline, interceptors, session, stores,
// upstreams) → core.
package arch
