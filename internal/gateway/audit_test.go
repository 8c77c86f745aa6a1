package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAuditDetectors: the audit trail's detector sets are the policies'
// own: a secret inside a JSON string is replaced and the payload stays
// JSON; a payload without one comes back as it was; an unknown set is
// refused.
func TestAuditDetectors(t *testing.T) {
	sc, err := auditDetector("secrets")
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"arguments":{"note":"key AKIAABCDEFGHIJKLMNOP and a jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2ln"}}`)
	out := sc.Scrub(in)
	if strings.Contains(string(out), "AKIAABCDEFGHIJKLMNOP") || !strings.Contains(string(out), "[REDACTED:aws-access-key]") || !strings.Contains(string(out), "[REDACTED:jwt]") || !json.Valid(out) {
		t.Fatalf("scrubbed: %s", out)
	}
	clean := []byte(`{"arguments":{"note":"nothing to hide"}}`)
	if got := sc.Scrub(clean); &got[0] != &clean[0] {
		t.Fatalf("a clean payload was copied: %s", got)
	}
	if _, err := auditDetector("secrest"); err == nil {
		t.Fatal("an unknown detector set was accepted")
	}
}
