// Package cli is mcpgate's command tree (serve, validate, version, key new). The
// binary's main only calls Main, so the commands can be tested in-process.
package cli
