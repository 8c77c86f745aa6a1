package pipeline

import (
	"fmt"
	"slices"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Order lists every known stage, outermost first. Stages added by later
// capabilities take their place here, not in init side effects:
//
//	logging  – structured log of each exchange
//	auth     – principal and tenant from credentials (planned)
//	limits   – quotas and rate limits (planned)
//	policy   – allowlists, schema validation, redaction (planned)
//	audit    – the audit trail (planned)
var Order = []string{"logging", "auth", "limits", "policy", "audit"}

// Stage is one named interceptor.
type Stage struct {
	Name        string
	Interceptor core.Interceptor
}

// Build wraps terminal in the given stages. Stages are sorted by their
// place in Order; an unknown name is an error, so a typo cannot silently
// move a stage. A stage with a nil interceptor (a switched-off feature) is
// left out.
func Build(terminal core.Handler, stages []Stage) (core.Handler, error) {
	for _, s := range stages {
		if !slices.Contains(Order, s.Name) {
			return nil, fmt.Errorf("pipeline: unknown stage %q (known: %v)", s.Name, Order)
		}
	}
	sorted := slices.DeleteFunc(slices.Clone(stages), func(s Stage) bool { return s.Interceptor == nil })
	slices.SortStableFunc(sorted, func(a, b Stage) int {
		return slices.Index(Order, a.Name) - slices.Index(Order, b.Name)
	})
	h := terminal
	for i := len(sorted) - 1; i >= 0; i-- {
		h = sorted[i].Interceptor(h)
	}
	return h, nil
}
