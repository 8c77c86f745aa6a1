package store

// ErrorReporter is implemented by stores that make calls of their own in
// the background, such as the flush of buffered touches: a failure there
// reaches no caller, so the store reports it. The gateway points it at the
// store monitor's error counter (mcpgate_store_errors_total{op}).
type ErrorReporter interface {
	// ReportErrors makes the store call fn, by operation ("touch" for a
	// failed flush of buffered activity), for each background call that
	// failed. Call it before the store is used; fn must be safe for use
	// by multiple goroutines and must not block.
	ReportErrors(fn func(op string))
}
