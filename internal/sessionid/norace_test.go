//go:build !race

package sessionid_test

const raceEnabled = false
