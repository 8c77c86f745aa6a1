package sessionid_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/sessionid"
)

var (
	k1 = sessionid.Key{ID: "k1", Secret: secret(1)}
	k2 = sessionid.Key{ID: "k2", Secret: secret(2)}
	k3 = sessionid.Key{ID: "k3", Secret: secret(3)}
)

func newMinter(t testing.TB, current sessionid.Key, previous ...sessionid.Key) *sessionid.Minter {
	t.Helper()
	m, err := sessionid.NewMinter(current, previous...)
	if err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	return m
}

// refVerify is an independent reference for Minter.Verify, written from the
// format in the package doc with crypto/hmac and a strict encoding/base64.
func refVerify(keys []sessionid.Key, id string) error {
	parts := strings.Split(id, ".")
	if len(id) > sessionid.MaxLen || len(parts) != 3 ||
		!keyIDRE.MatchString(parts[1]) ||
		len(parts[0]) != 22 || len(parts[2]) != 22 ||
		strings.ContainsAny(id, "\r\n") { // encoding/base64 would skip them
		return sessionid.ErrMalformed
	}
	strict := base64.RawURLEncoding.Strict()
	random, err1 := strict.DecodeString(parts[0])
	mac, err2 := strict.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return sessionid.ErrMalformed
	}
	for _, k := range keys {
		if k.ID != parts[1] {
			continue
		}
		h := hmac.New(sha256.New, k.Secret)
		h.Write([]byte{1, byte(len(k.ID))})
		h.Write([]byte(k.ID))
		h.Write(random)
		if !hmac.Equal(h.Sum(nil)[:16], mac) {
			return sessionid.ErrForged
		}
		return nil
	}
	return sessionid.ErrUnknownKey
}

// tchar is RFC 9110's token character set: a header value of these never
// needs quoting.
var tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22}\.[A-Za-z0-9]{1,16}\.[A-Za-z0-9_-]{22}$`)

func TestNewMinter(t *testing.T) {
	long := sessionid.Key{ID: strings.Repeat("k", 16), Secret: secret(9)}
	tests := []struct {
		name     string
		current  sessionid.Key
		previous []sessionid.Key
		wantErrs []string // one substring of the error per problem
	}{
		{name: "current only", current: k1},
		{name: "with previous", current: k2, previous: []sessionid.Key{k1, k3}},
		{name: "longest key id", current: long},
		{name: "long secret", current: sessionid.Key{ID: "k1", Secret: make([]byte, 1000)}},
		{
			name:     "short secret",
			current:  sessionid.Key{ID: "k1", Secret: make([]byte, 31)},
			wantErrs: []string{"current.secret: invalid session id key: 31 bytes, need at least 32"},
		},
		{
			name:     "nil secret",
			current:  sessionid.Key{ID: "k1"},
			wantErrs: []string{"current.secret: invalid session id key: 0 bytes"},
		},
		{
			name:     "empty key id",
			current:  sessionid.Key{Secret: secret(1)},
			wantErrs: []string{`current.id: invalid session id key: key id "" must be 1-16 characters`},
		},
		{
			name:     "key id too long",
			current:  sessionid.Key{ID: strings.Repeat("k", 17), Secret: secret(1)},
			wantErrs: []string{`current.id: invalid session id key: key id "kkkkkkkkkkkkkkkkk" must be 1-16 characters`},
		},
		{
			name:     "dot in key id",
			current:  sessionid.Key{ID: "k.1", Secret: secret(1)},
			wantErrs: []string{`current.id: invalid session id key: key id "k.1" may only hold [A-Za-z0-9]`},
		},
		{
			name:     "dash in previous key id",
			current:  k1,
			previous: []sessionid.Key{{ID: "k-2", Secret: secret(2)}},
			wantErrs: []string{`previous[0].id: invalid session id key: key id "k-2" may only hold`},
		},
		{
			name:     "non-ASCII key id",
			current:  sessionid.Key{ID: "kö", Secret: secret(1)},
			wantErrs: []string{`current.id: invalid session id key: key id "kö" may only hold [A-Za-z0-9]`},
		},
		{
			name:     "duplicate of current",
			current:  k1,
			previous: []sessionid.Key{k2, {ID: "k1", Secret: secret(7)}},
			wantErrs: []string{`previous[1].id: invalid session id key: duplicate key id "k1"`},
		},
		{
			name:     "duplicate previous",
			current:  k1,
			previous: []sessionid.Key{k2, k2},
			wantErrs: []string{`previous[1].id: invalid session id key: duplicate key id "k2"`},
		},
		{
			name:     "every problem reported",
			current:  sessionid.Key{ID: "", Secret: nil},
			previous: []sessionid.Key{k1, {ID: "k1", Secret: secret(1)[:8]}},
			wantErrs: []string{"current.id:", "current.secret:", "previous[1].id:", "previous[1].secret: invalid session id key: 8 bytes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sessionid.NewMinter(tt.current, tt.previous...)
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("NewMinter: %v", err)
				}
				if id := m.Mint(); m.Verify(id) != nil {
					t.Fatalf("Verify(Mint()) = %v", m.Verify(id))
				}
				return
			}
			if err == nil || m != nil {
				t.Fatalf("NewMinter = %v, %v; want nil and an error", m, err)
			}
			if !errors.Is(err, sessionid.ErrInvalidKey) {
				t.Errorf("error %v does not wrap ErrInvalidKey", err)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if got := len(strings.Split(err.Error(), "\n")); got != len(tt.wantErrs) {
				t.Errorf("error reports %d problems, want %d:\n%v", got, len(tt.wantErrs), err)
			}
		})
	}
}

func TestNewMinterCopiesSecret(t *testing.T) {
	s := secret(5)
	m := newMinter(t, sessionid.Key{ID: "k5", Secret: s})
	id := m.Mint()
	clear(s)
	if err := m.Verify(id); err != nil {
		t.Fatalf("Verify after the caller cleared its secret: %v", err)
	}
	if err := newMinter(t, sessionid.Key{ID: "k5", Secret: secret(5)}).Verify(m.Mint()); err != nil {
		t.Fatalf("Mint after the caller cleared its secret used the cleared bytes: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	keys := []sessionid.Key{k1, {ID: strings.Repeat("Z9", 8), Secret: secret(8)}}
	for _, k := range keys {
		t.Run(k.ID, func(t *testing.T) {
			m := newMinter(t, k)
			seen := map[string]bool{}
			for range 1000 {
				id := m.Mint()
				if seen[id] {
					t.Fatalf("Mint repeated %q", id)
				}
				seen[id] = true
				if !idRE.MatchString(id) || !tokenRE.MatchString(id) || len(id) > sessionid.MaxLen {
					t.Fatalf("Mint() = %q: not a header-safe id of the documented shape", id)
				}
				if err := m.Verify(id); err != nil {
					t.Fatalf("Verify(%q) = %v", id, err)
				}
				if err := refVerify(keys, id); err != nil {
					t.Fatalf("reference verify of %q = %v", id, err)
				}
				if got, err := sessionid.KeyID(id); got != k.ID || err != nil {
					t.Fatalf("KeyID(%q) = %q, %v; want %q", id, got, err, k.ID)
				}
			}
		})
	}
}

func TestRotation(t *testing.T) {
	before := newMinter(t, k1)
	during := newMinter(t, k2, k1)
	after := newMinter(t, k2)
	old, fresh := before.Mint(), during.Mint()

	tests := []struct {
		name string
		m    *sessionid.Minter
		id   string
		want error
	}{
		{"old key current", before, old, nil},
		{"new key unknown before the rotation", before, fresh, sessionid.ErrUnknownKey},
		{"old key previous", during, old, nil},
		{"new key current", during, fresh, nil},
		{"old key dropped", after, old, sessionid.ErrUnknownKey},
		{"new key after", after, fresh, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.Verify(tt.id); got != tt.want {
				t.Errorf("Verify(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
	if got, _ := sessionid.KeyID(fresh); got != "k2" {
		t.Errorf("a Minter with previous keys minted with %q, want the current k2", got)
	}
}

func TestSameKeyIDOtherSecret(t *testing.T) {
	ours := newMinter(t, k1)
	theirs := newMinter(t, sessionid.Key{ID: k1.ID, Secret: secret(0xee)})
	for range 100 {
		if err := ours.Verify(theirs.Mint()); err != sessionid.ErrForged {
			t.Fatalf("Verify(id from another secret) = %v, want ErrForged", err)
		}
	}
}

// TestTamper changes, deletes and inserts every byte value at every
// position of valid ids: nothing but the original may verify.
func TestTamper(t *testing.T) {
	// "k1"→"k2", "k3" lands on configured keys: those must be ErrForged.
	keys := []sessionid.Key{k1, k2, k3}
	m := newMinter(t, k1, k2, k3)
	check := func(t *testing.T, orig, mutated string) {
		t.Helper()
		if mutated == orig {
			return
		}
		got := m.Verify(mutated)
		if got == nil {
			t.Fatalf("Verify(%q) = nil for a tampered copy of %q", mutated, orig)
		}
		if want := refVerify(keys, mutated); got != want {
			t.Fatalf("Verify(%q) = %v, reference says %v", mutated, got, want)
		}
	}
	counts := map[error]int{}
	for range 8 {
		id := m.Mint()
		for i := 0; i < len(id); i++ {
			for c := range 256 {
				b := []byte(id)
				b[i] = byte(c)
				check(t, id, string(b))
				counts[m.Verify(string(b))]++
				check(t, id, id[:i]+string(rune(c))+id[i:]) // insert (UTF-8 above 0x7f)
				check(t, id, id[:i]+string([]byte{byte(c)})+id[i:])
			}
			check(t, id, id[:i]+id[i+1:]) // delete
			check(t, id, id[:i])          // truncate
			if i+1 < len(id) {            // swap neighbours
				b := []byte(id)
				b[i], b[i+1] = b[i+1], b[i]
				check(t, id, string(b))
			}
		}
		check(t, id, id+"A")
		check(t, id, id+".")
		check(t, id, strings.ToUpper(id))
		check(t, id, strings.ToLower(id))
	}
	delete(counts, nil) // the unchanged id, once per position
	for _, err := range []error{sessionid.ErrMalformed, sessionid.ErrForged, sessionid.ErrUnknownKey} {
		if counts[err] == 0 {
			t.Errorf("no single-byte change gave %v; the test does not cover it", err)
		}
	}
	t.Logf("single-byte changes: %v", counts)
}

func TestVerifyErrors(t *testing.T) {
	m := newMinter(t, k1, k2)
	valid := m.Mint()
	random, mac := valid[:22], valid[len(valid)-22:]
	tests := []struct {
		name string
		id   string
		want error
	}{
		{"valid", valid, nil},
		{"empty", "", sessionid.ErrMalformed},
		{"plain id", (*sessionid.Minter)(nil).Mint(), sessionid.ErrMalformed},
		{"too long", valid + strings.Repeat("A", 200), sessionid.ErrMalformed},
		{"no dots", strings.ReplaceAll(valid, ".", ""), sessionid.ErrMalformed},
		{"extra field", random + ".k1.k1." + mac, sessionid.ErrMalformed},
		{"empty key id", random + ".." + mac, sessionid.ErrMalformed},
		{"key id too long", random + "." + strings.Repeat("k", 17) + "." + mac, sessionid.ErrMalformed},
		{"longest unknown key id", random + "." + strings.Repeat("k", 16) + "." + mac, sessionid.ErrUnknownKey},
		{"bad key id char", random + ".k_." + mac, sessionid.ErrMalformed},
		{"padded random", random[:21] + "=.k1." + mac, sessionid.ErrMalformed},
		{"standard base64", random[:21] + "+.k1." + mac, sessionid.ErrMalformed},
		{"newline in mac", random + ".k1." + mac[:10] + "\n" + mac[11:], sessionid.ErrMalformed},
		{"short random", random[1:] + ".k1." + mac, sessionid.ErrMalformed},
		{"long mac", random + ".k1." + mac + "A", sessionid.ErrMalformed},
		// 'B' sets a trailing bit that decodes to the same bytes as 'A'
		// with a lenient decoder: a second spelling of one id.
		{"non-canonical random", random[:21] + nonCanonical(random[21]) + ".k1." + mac, sessionid.ErrMalformed},
		{"non-canonical mac", valid[:len(valid)-1] + nonCanonical(mac[21]), sessionid.ErrMalformed},
		{"unknown key", random + ".k9." + mac, sessionid.ErrUnknownKey},
		{"other configured key", random + ".k2." + mac, sessionid.ErrForged},
		{"zero mac", random + ".k1.AAAAAAAAAAAAAAAAAAAAAA", sessionid.ErrForged},
		{"mac of another id", m.Mint()[:23] + "k1." + mac, sessionid.ErrForged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Verify(tt.id); got != tt.want {
				t.Errorf("Verify(%q) = %v, want %v", tt.id, got, tt.want)
			}
			if got := refVerify([]sessionid.Key{k1, k2}, tt.id); got != tt.want {
				t.Errorf("reference verify of %q = %v, want %v: the test case is wrong", tt.id, got, tt.want)
			}
			_, err := sessionid.KeyID(tt.id)
			if (err == nil) != (tt.want != sessionid.ErrMalformed) {
				t.Errorf("KeyID(%q) error = %v; Verify says %v", tt.id, err, tt.want)
			}
		})
	}
}

// nonCanonical returns the character that differs from c only in the low
// four bits the last char of a 16-byte field does not use.
func nonCanonical(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return string(alphabet[strings.IndexByte(alphabet, c)^1])
}

func TestNilMinter(t *testing.T) {
	var m *sessionid.Minter
	seen := map[string]bool{}
	for range 1000 {
		id := m.Mint()
		if len(id) != 32 || !tokenRE.MatchString(id) || seen[id] {
			t.Fatalf("nil Mint() = %q: want 32 fresh header-safe chars", id)
		}
		seen[id] = true
		if err := m.Verify(id); err != nil {
			t.Fatalf("nil Verify(%q) = %v", id, err)
		}
	}
	tests := []struct {
		name string
		id   string
		want error
	}{
		{"MAC'd id", newMinter(t, k1).Mint(), nil},
		{"any visible ASCII", "!~" + strings.Repeat("x", 126), nil},
		{"one char", "x", nil},
		{"empty", "", sessionid.ErrMalformed},
		{"too long", strings.Repeat("x", 129), sessionid.ErrMalformed},
		{"space", "a b", sessionid.ErrMalformed},
		{"tab", "a\tb", sessionid.ErrMalformed},
		{"DEL", "a\x7f", sessionid.ErrMalformed},
		{"NUL", "a\x00", sessionid.ErrMalformed},
		{"non-ASCII", "sessión", sessionid.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Verify(tt.id); got != tt.want {
				t.Errorf("nil Verify(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestVerifyDoesNotAllocate(t *testing.T) {
	m := newMinter(t, k2, k1)
	old := newMinter(t, k1).Mint()
	valid := m.Mint()
	tests := []struct {
		name string
		m    *sessionid.Minter
		id   string
	}{
		{"current key", m, valid},
		{"previous key", m, old},
		{"forged", m, valid[:len(valid)-2] + "AA"},
		{"unknown key", m, valid[:23] + "k9" + valid[25:]},
		{"malformed", m, "not-an-id"},
		{"nil minter", nil, valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if raceEnabled {
				t.Skip("the race detector makes sync.Pool drop items, so Verify allocates")
			}
			var err error
			if n := testing.AllocsPerRun(1000, func() { err = tt.m.Verify(tt.id) }); n != 0 {
				t.Errorf("Verify allocated %v times per call (err %v)", n, err)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	m := newMinter(t, k2, k1)
	old := newMinter(t, k1)
	ids := make(chan string, 64)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				ids <- m.Mint()
				ids <- old.Mint()
			}
		})
	}
	var checkers sync.WaitGroup
	for range 8 {
		checkers.Go(func() {
			for id := range ids {
				if err := m.Verify(id); err != nil {
					t.Errorf("Verify(%q) = %v", id, err)
				}
				if err := m.Verify(id[:len(id)-1] + "."); err != sessionid.ErrMalformed {
					t.Errorf("Verify(tampered %q) = %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	close(ids)
	checkers.Wait()
}

func TestKeyNeverPrintsSecret(t *testing.T) {
	raw := []byte("top-secret-session-key-material!") // 32 bytes
	k := sessionid.Key{ID: "k1", Secret: raw}
	forms := []string{string(raw), hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw),
		fmt.Sprint([]byte(raw)), fmt.Sprint(raw[0], " ", raw[1], " ", raw[2])}

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v"} {
		fmt.Fprintf(&out, verb+"\n", k)
		fmt.Fprintf(&out, verb+"\n", &k)
		fmt.Fprintf(&out, verb+"\n", []sessionid.Key{k})
		fmt.Fprintf(&out, verb+"\n", struct{ Current sessionid.Key }{k})
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("msg", "key", k, "keys", []sessionid.Key{k})
	slog.New(slog.NewTextHandler(&out, nil)).Info("msg", "key", k, "ptr", &k, "keys", []sessionid.Key{k})
	js, err := json.Marshal(struct{ Keys []sessionid.Key }{[]sessionid.Key{k}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Keys":[{"id":"k1","secret":"REDACTED"}]}`; string(js) != want {
		t.Errorf("json.Marshal = %s, want %s", js, want)
	}
	out.Write(js)
	for _, f := range forms {
		if strings.Contains(out.String(), f) {
			t.Errorf("output holds the secret as %q:\n%s", f, out.String())
		}
	}
	if !strings.Contains(out.String(), "REDACTED") || !strings.Contains(out.String(), "k1") {
		t.Errorf("output lacks the key id or REDACTED:\n%s", out.String())
	}

	var got map[string]any
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey {
			return slog.Attr{}
		}
		return a
	}})).Info("msg", "key", k)
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"key": map[string]any{"id": "k1", "secret": "REDACTED"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("slog JSON (-want +got):\n%s", diff)
	}
}
