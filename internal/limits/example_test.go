package limits_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/limits"
)

func ExampleWindow() {
	// At most 2 sessions per client address per minute.
	creations := limits.NewWindow(2, time.Minute, limits.WindowOptions{})
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	for i, at := range []time.Duration{0, 10 * time.Second, 20 * time.Second, time.Minute} {
		retry, err := creations.Admit(context.Background(), "203.0.113.7", t0.Add(at))
		switch {
		case errors.Is(err, limits.ErrLimited):
			fmt.Printf("creation %d: 429, Retry-After: %s\n", i, limits.RetryAfterSeconds(retry))
		case errors.Is(err, limits.ErrTooManyKeys):
			fmt.Printf("creation %d: 503\n", i)
		default:
			fmt.Printf("creation %d: created\n", i)
		}
	}
	// Output:
	// creation 0: created
	// creation 1: created
	// creation 2: 429, Retry-After: 40
	// creation 3: created
}

func ExampleWindow_Undo() {
	creations := limits.NewWindow(1, time.Minute, limits.WindowOptions{})
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	if ok, _ := creations.Allow("alice", now); ok {
		// Creating the session failed upstream: the attempt costs no slot.
		creations.Undo(context.Background(), "alice", now)
	}
	ok, _ := creations.Allow("alice", now)
	fmt.Println("retry admitted:", ok)
	// Output:
	// retry admitted: true
}

func ExampleBuckets() {
	// 2 requests per second per principal, bursts of 3.
	requests := limits.NewBuckets(2, 3, limits.BucketOptions{})
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	for i := range 4 {
		ok, retry := requests.Allow("principal:alice", now)
		fmt.Println(i, ok, retry)
	}
	ok, _ := requests.Allow("principal:alice", now.Add(500*time.Millisecond))
	fmt.Println("after 500ms:", ok)
	// Output:
	// 0 true 0s
	// 1 true 0s
	// 2 true 0s
	// 3 false 500ms
	// after 500ms: true
}

func ExampleNewBuckets_switchedOff() {
	// A rate of zero switches the limit off: the nil limiter admits
	// everything and costs nothing.
	requests := limits.NewBuckets(0, 0, limits.BucketOptions{})
	ok, _ := requests.Allow("principal:alice", time.Now())
	fmt.Println(requests == nil, ok)
	// Output:
	// true true
}

func ExampleRetryAfterSeconds() {
	fmt.Println(limits.RetryAfterSeconds(7 * time.Second))
	fmt.Println(limits.RetryAfterSeconds(1500 * time.Millisecond))
	fmt.Println(limits.RetryAfterSeconds(0))
	// Output:
	// 7
	// 2
	// 1
}
