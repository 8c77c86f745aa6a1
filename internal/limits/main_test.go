package limits

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The limiters start no goroutines; the concurrency tests start many.
	goleak.VerifyTestMain(m)
}

// sleepUntil advances a synctest bubble's clock to start+d.
func sleepUntil(start time.Time, d time.Duration) {
	time.Sleep(time.Until(start.Add(d)))
}
