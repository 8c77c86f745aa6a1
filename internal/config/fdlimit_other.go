//go:build !unix

package config

func fdLimit() (int, bool) { return 0, false }
