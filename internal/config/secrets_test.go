package config

import (
	"slices"
	"strings"
	"testing"
)

// TestRedactedSecretsRoundTrip: a text shown with its secrets redacted
// loads over the configuration in force with every secret as it was,
// routes matched by name even when they moved.
func TestRedactedSecretsRoundTrip(t *testing.T) {
	const key = "Qm9vdHN0cmFwIGtleSBmb3IgdGVzdHMgb25seSE3OTFhNGM"
	text := `sessions:
  id_keys: [{id: k1, secret: "` + key + `"}]
routes:
  - name: a
    path: /a
    upstream: {http: {url: "http://127.0.0.1:9/", headers: {Authorization: "Bearer upstream-token-a"}}}
  - name: b
    path: /b
    upstream: {http: {url: "http://127.0.0.1:9/", headers: {Authorization: "Bearer upstream-token-b"}}}
`
	prev, err := LoadBytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	secrets := prev.Secrets()
	slices.Sort(secrets)
	if want := []string{"Bearer upstream-token-a", "Bearer upstream-token-b", key}; !slices.Equal(secrets, want) {
		t.Fatalf("secrets %q; want %q", secrets, want)
	}
	shown := string(RedactText([]byte(text), secrets))
	for _, s := range secrets {
		if strings.Contains(shown, s) {
			t.Fatalf("the redacted text holds %q:\n%s", s, shown)
		}
	}
	if strings.Count(shown, Redacted) != 3 || !strings.Contains(shown, "name: a") {
		t.Fatalf("redacted text:\n%s", shown)
	}
	// The routes swapped places in the text: each keeps its own header.
	swapped := strings.Replace(strings.Replace(shown, "name: a", "name: x", 1), "name: b", "name: a", 1)
	swapped = strings.Replace(swapped, "name: x", "name: b", 1)
	next, err := LoadBytesOver([]byte(swapped), prev)
	if err != nil {
		t.Fatal(err)
	}
	if next.Sessions.IDKeys[0].Secret.Reveal() != key {
		t.Error("id key not restored")
	}
	for _, r := range next.Routes {
		if got := r.Upstream.HTTP.Headers["Authorization"].Reveal(); got != "Bearer upstream-token-"+r.Name {
			t.Errorf("route %s: header %q", r.Name, got)
		}
	}
	// Without a configuration to take them from, a redacted id key is
	// refused as the placeholder it is.
	if _, err := LoadBytesOver([]byte(shown), nil); err == nil || !strings.Contains(err.Error(), "sessions.id_keys[0].secret") {
		t.Fatalf("redacted id key over nothing: %v", err)
	}
}
