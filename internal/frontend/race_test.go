//go:build race

package frontend

// raceEnabled: the race detector allocates on its own; allocation bounds
// are not checked under it.
const raceEnabled = true
