// Package bridge carries one session across the 2026 protocol break. It
// wraps an upstream.Upstream: a Conn opened for a client of the upstream's
// own era passes straight through; one opened for a client of the other
// era translates, in this package and nowhere else:
//
//   - a modern (2026-07-28) client of a legacy server: mcpgate holds a
//     legacy upstream session for the client's modern session,
//     initialized from the client's _meta; server/discover is answered
//     from the InitializeResult; server→client requests become
//     input_required results (MRTR) whose retries answer them;
//     subscriptions/listen maps onto the GET stream and resources/subscribe.
//   - a legacy client of a modern server: mcpgate answers initialize from
//     server/discover, adds the modern _meta to every request; input_required
//     results become server→client requests on the client's stream, their
//     answers the retry; the GET stream and resources/subscribe map onto
//     subscriptions/listen; ping and logging/setLevel are answered here.
//
// What cannot be translated faithfully fails with an error naming the
// feature, never silently.
package bridge
