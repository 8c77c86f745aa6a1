package core

import "slices"

// Era is the generation of the MCP protocol a peer speaks.
type Era uint8

const (
	// EraUnknown means not yet known (an upstream that has not been probed).
	EraUnknown Era = iota
	// EraLegacy covers 2024-11-05 through 2025-11-25: initialize,
	// Mcp-Session-Id, a GET stream, resumable SSE.
	EraLegacy
	// EraModern covers 2026-07-28 and later: stateless requests carrying
	// their protocol version, capabilities and client info in params._meta.
	EraModern
)

func (e Era) String() string {
	switch e {
	case EraLegacy:
		return "legacy"
	case EraModern:
		return "modern"
	}
	return "unknown"
}

// Protocol revisions mcpgate knows.
const (
	Version20241105 = "2024-11-05"
	Version20250326 = "2025-03-26"
	Version20250618 = "2025-06-18"
	Version20251125 = "2025-11-25"
	Version20260728 = "2026-07-28"

	// DefaultLegacyVersion is assumed when a legacy request carries no
	// MCP-Protocol-Version header (the header did not exist before 2025-06-18).
	DefaultLegacyVersion = Version20250326
	// LatestLegacyVersion is the newest revision with sessions.
	LatestLegacyVersion = Version20251125
)

// LegacyVersions lists the session-era revisions, newest first.
var LegacyVersions = []string{Version20251125, Version20250618, Version20250326, Version20241105}

// ModernVersions lists the stateless-era revisions, newest first.
var ModernVersions = []string{Version20260728}

// EraOf reports the era of a protocol revision, or EraUnknown for a string
// that is not a revision mcpgate knows.
func EraOf(version string) Era {
	switch version {
	case Version20241105, Version20250326, Version20250618, Version20251125:
		return EraLegacy
	case Version20260728:
		return EraModern
	}
	return EraUnknown
}

// SupportsBatch reports whether a legacy revision accepts JSON-RPC batches
// (only 2025-03-26 required servers to accept them; 2025-06-18 removed them).
func SupportsBatch(version string) bool {
	return version == Version20250326 || version == Version20241105
}

// SupportsPriming reports whether SSE streams of this revision start with a
// priming event (an id and empty data) so the client can resume them.
func SupportsPriming(version string) bool {
	return version >= Version20251125 && EraOf(version) == EraLegacy
}

// NegotiateLegacy answers an initialize request's protocolVersion: the same
// version if it is supported, else the newest supported one, as the
// lifecycle rules require.
func NegotiateLegacy(requested string, supported []string) string {
	if slices.Contains(supported, requested) {
		return requested
	}
	if len(supported) > 0 {
		return supported[0]
	}
	return LatestLegacyVersion
}
