package audit

import (
	"crypto/sha256"
	"encoding/hex"
)

// SealForTest gives a record body (the line without its hash member) a
// fresh hash, as someone rewriting the trail would.
func SealForTest(body string) string {
	sum := sha256.Sum256([]byte(body))
	return body[:len(body)-1] + hashSuffix + hex.EncodeToString(sum[:]) + `"}`
}

// SpoolNameForTest is the file name of a sink's spool.
func SpoolNameForTest(name, key string) string {
	sum := sha256.Sum256([]byte(key))
	return name + "-" + hex.EncodeToString(sum[:4]) + ".spool"
}
