//go:build !linux

package stdio

// landlockABI is 0: Landlock is Linux's.
func landlockABI() int { return 0 }
