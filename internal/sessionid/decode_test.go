package sessionid

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzDecode16 checks the hand-written decoder against a strict
// encoding/base64, which additionally skips '\r' and '\n'.
func FuzzDecode16(f *testing.F) {
	for _, s := range []string{
		"AAECAwQFBgcICQoLDA0ODw", "AAECAwQFBgcICQoLDA0ODx", "_____________________w",
		"______________________", "AAECAwQFBgcICQoLDA0OD", "AAECAwQFBgcICQoLDA0ODwA",
		"AAECAwQFBgcICQoLDA0O\nw", "AAECAwQFBgcICQoLDA0OD=", "+/ECAwQFBgcICQoLDA0ODw", "",
	} {
		f.Add(s)
	}
	strict := base64.RawURLEncoding.Strict()
	f.Fuzz(func(t *testing.T, s string) {
		var got [16]byte
		ok := decode16(&got, s)
		want, err := strict.DecodeString(s)
		wantOK := err == nil && len(s) == fieldLen && len(want) == 16 && !strings.ContainsAny(s, "\r\n")
		if ok != wantOK {
			t.Fatalf("decode16(%q) ok = %v, encoding/base64 says %v (err %v)", s, ok, wantOK, err)
		}
		if !ok {
			return
		}
		if !bytes.Equal(got[:], want) {
			t.Fatalf("decode16(%q) = %x, want %x", s, got, want)
		}
		if again := base64.RawURLEncoding.EncodeToString(got[:]); again != s {
			t.Fatalf("decode16(%q) = %x, which encodes as %q", s, got, again)
		}
	})
}
