// Package pipeline composes interceptors into the one message chain every
// message passes through, in either direction and either era.
//
// The order is data, kept in one table (Order): earlier stages wrap later
// ones, so the first stage sees a message first and its response last.
// A stage that is not configured is simply absent from the chain and costs
// nothing.
//
//	h := pipeline.Build(terminal, []pipeline.Stage{
//		{Name: "logging", Interceptor: logging.New(logger)},
//	})
//	resp, err := h(ctx, msg)
package pipeline
