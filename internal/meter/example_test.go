package meter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/meter"
)

func Example() {
	// A budget of 1000 result bytes per key and hour.
	budget := meter.NewLocal(meter.Spec{Window: time.Hour, Counters: []meter.Counter{
		{Name: "result_bytes", Limit: 1000},
	}}, 0)
	ctx, now := context.Background(), time.Now()

	// Before the call: hold an estimate (at most what is left).
	r, err := budget.Reserve(ctx, "acme/alice", []meter.Charge{{Counter: 0, Amount: 300, Clamp: true}}, now)
	if err != nil {
		panic(err)
	}
	// After it: the actual amount replaces the estimate.
	r.Actual[0] = 700
	fmt.Println(budget.Settle(ctx, &r, now), r.Used[0])

	// A second result of 400 bytes does not fit: nothing of it is counted.
	r, _ = budget.Reserve(ctx, "acme/alice", []meter.Charge{{Counter: 0, Amount: 300, Clamp: true}}, now)
	r.Actual[0] = 400
	err = budget.Settle(ctx, &r, now)
	ref, _ := meter.Refused(err)
	fmt.Println(ref.Counter, ref.Used, ref.Limit, r.Used[0])
	// Output:
	// <nil> 700
	// result_bytes 1100 1000 700
}
