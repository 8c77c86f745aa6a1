package sessionid

// MintWith mints with the given random bytes instead of crypto/rand's, so
// that tests can pin the id format and fuzz seeds are the same in every
// fuzzing process.
func MintWith(m *Minter, random [16]byte) string { return m.mint(&random) }
