package shared

import (
	"encoding/json"
	"testing"
)

// FuzzFingerprint: any initialize params either fail to parse or give a
// fingerprint that does not depend on how the capabilities are spelled
// (member order, white space): re-encoding them keeps it.
func FuzzFingerprint(f *testing.F) {
	f.Add([]byte(`{"protocolVersion":"2025-06-18","capabilities":{"sampling":{},"roots":{"listChanged":true}}}`))
	f.Add([]byte(`{"capabilities":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, params []byte) {
		fp, err := fingerprint(params)
		if err != nil {
			return
		}
		var p map[string]any
		if json.Unmarshal(params, &p) != nil {
			t.Fatalf("fingerprint accepted params that are not an object: %q", params)
		}
		again, err := json.Marshal(p)
		if err != nil {
			return
		}
		fp2, err := fingerprint(again)
		if err != nil || fp2 != fp {
			t.Fatalf("re-encoded params give %q (%v), want %q", fp2, err, fp)
		}
	})
}
