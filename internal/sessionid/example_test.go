package sessionid_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/mcpgate/mcpgate/internal/sessionid"
)

// secret returns a 32-byte secret for examples; real secrets come from
// crypto/rand via configuration.
func secret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func ExampleMinter() {
	m, err := sessionid.NewMinter(sessionid.Key{ID: "k1", Secret: secret(1)})
	if err != nil {
		panic(err)
	}
	id := m.Mint()
	fmt.Println(len(id), m.Verify(id))

	forged := "AAAAAAAAAAAAAAAAAAAAAA.k1.AAAAAAAAAAAAAAAAAAAAAA"
	fmt.Println(errors.Is(m.Verify(forged), sessionid.ErrForged))
	fmt.Println(errors.Is(m.Verify("not-an-id"), sessionid.ErrMalformed))
	// Output:
	// 48 <nil>
	// true
	// true
}

// Rotation takes two deploys: the new key current with the old one
// previous, then the new key alone.
func ExampleMinter_rotation() {
	k1 := sessionid.Key{ID: "k1", Secret: secret(1)}
	k2 := sessionid.Key{ID: "k2", Secret: secret(2)}

	before, _ := sessionid.NewMinter(k1)
	old := before.Mint()

	during, _ := sessionid.NewMinter(k2, k1)
	fmt.Println(during.Verify(old))
	fresh := during.Mint()
	fmt.Println(sessionid.KeyID(fresh))

	after, _ := sessionid.NewMinter(k2)
	fmt.Println(after.Verify(fresh))
	fmt.Println(errors.Is(after.Verify(old), sessionid.ErrUnknownKey))
	// Output:
	// <nil>
	// k2 <nil>
	// <nil>
	// true
}

// A nil Minter is "no MAC configured": plain random ids, and any visible
// ASCII id of bounded length is accepted.
func ExampleMinter_nil() {
	var m *sessionid.Minter
	id := m.Mint()
	fmt.Println(len(id), m.Verify(id))
	fmt.Println(m.Verify("client-chosen-id"))
	fmt.Println(errors.Is(m.Verify("has space"), sessionid.ErrMalformed))
	// Output:
	// 32 <nil>
	// <nil>
	// true
}

func ExampleKey_LogValue() {
	k := sessionid.Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}
	opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	slog.New(slog.NewTextHandler(os.Stdout, opts)).Info("session_key_loaded", "key", k)
	fmt.Printf("%v\n", k)
	// Output:
	// level=INFO msg=session_key_loaded key.id=k1 key.secret=REDACTED
	// sessionid.Key{ID:"k1", Secret:REDACTED}
}
