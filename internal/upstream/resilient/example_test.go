package resilient_test

import (
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/upstream/resilient"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// The options the gateway builds for a route with
// `retry: {on: [connect, 503]}` and `breaker: {}`.
func ExampleNew() {
	var on resilient.Classes
	for _, s := range []string{"connect", "503"} {
		c, _ := resilient.ParseClass(s)
		on |= resilient.Of(c)
	}
	inner := stdio.New(stdio.Options{Command: "my-server"}, "files", nil)
	up := resilient.New(inner, resilient.Options{
		Route:   "files",
		Retry:   &resilient.Retry{Attempts: 3, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Jitter: true, Budget: 10 * time.Second, On: on},
		Breaker: &resilient.Breaker{FailureRatio: 0.5, MinRequests: 20, Window: 30 * time.Second, OpenFor: 15 * time.Second, HalfOpenRequests: 3},
		Repeat:  catalog.Repeat{Tools: []string{"search"}, TrustAnnotations: true},
	})
	defer up.Close()
	fmt.Println(on.Has(resilient.ClassConnect), on.Has(resilient.Class503), on.Has(resilient.ClassReset))
	// Output: true true false
}
