// Package config defines mcpgate's configuration file, decodes it strictly
// (unknown keys and wrong types are errors that name their path and line,
// all reported at once), fills in safe defaults and validates it.
//
//	cfg, err := config.Load("mcpgate.yaml") // decode + defaults + Validate
//	if err != nil {
//		fmt.Println(err) // every problem, one per line
//	}
//
// `mcpgate serve` and `mcpgate validate` both call Load, then build the
// gateway from the result; validate stops before listening.
package config
