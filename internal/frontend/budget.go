package frontend

import "sync/atomic"

// historyBudget bounds the bytes of SSE history kept for resumption, per
// session and across the gateway. A nil budget admits everything.
type historyBudget struct {
	session      atomic.Int64
	sessionLimit int64
	total        *atomic.Int64
	totalLimit   int64
}

// take reserves n bytes in both budgets, or nothing.
func (b *historyBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	if b.session.Add(n) > b.sessionLimit {
		b.session.Add(-n)
		return false
	}
	if b.total.Add(n) > b.totalLimit {
		b.total.Add(-n)
		b.session.Add(-n)
		return false
	}
	return true
}

func (b *historyBudget) give(n int64) {
	if b == nil {
		return
	}
	b.session.Add(-n)
	b.total.Add(-n)
}
