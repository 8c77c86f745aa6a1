package config

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// problems loads in and returns its problems as text.
func problems(t *testing.T, in string) []string {
	t.Helper()
	_, err := LoadBytes([]byte(in))
	if err == nil {
		return nil
	}
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v; want *Error", err)
	}
	var got []string
	for _, p := range cerr.Problems {
		got = append(got, p.Error())
	}
	return got
}

func stdioRoute(extra string) string {
	return "routes:\n  - path: /mcp\n    upstream:\n      stdio:\n        command: sh\n" + extra
}

func TestSandboxConfig(t *testing.T) {
	cfg, err := LoadBytes([]byte(stdioRoute(`        sandbox:
          user: "65534:65534"
          rlimits: {address_space: 1GiB, cpu_seconds: 60, open_files: 256, processes: 64}
          memory: 512MiB
          cpu: 0.5
          filesystem: {read: [/usr, /etc], write: [/tmp], exec: [/usr/bin, /bin], require: false}
`)))
	if err != nil {
		t.Fatal(err)
	}
	sb := cfg.Routes[0].Upstream.Stdio.Sandbox
	if sb.Memory != 512<<20 || sb.CPU != 0.5 {
		t.Errorf("memory %d, cpu %v; want 512MiB and 0.5", sb.Memory, sb.CPU)
	}
	if !sb.NoNewPrivsOn() || sb.Rlimits.AddressSpace != 1<<30 || sb.Rlimits.Processes != 64 || sb.Filesystem.Exec[0] != "/usr/bin" {
		t.Errorf("sandbox = %+v (rlimits %+v)", sb, sb.Rlimits)
	}
	u, err := ResolveUser(sb.User)
	if err != nil || u != (SandboxUser{UID: 65534, GID: 65534}) {
		t.Errorf("user = %+v, %v", u, err)
	}
}

func TestSandboxErrors(t *testing.T) {
	rootOnly := os.Geteuid() == 0
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want []string
		root bool // only as root (the check depends on the gateway's user)
	}{
		{"relative path", "        sandbox: {filesystem: {read: [no-such-dir], exec: [/bin, /usr/bin]}}\n",
			[]string{`routes[0].upstream.stdio.sandbox.filesystem.read[0]: ` + filepath.Join(wd, "no-such-dir") + `: no such file or directory (line 6)`}, false},
		{"missing path", "        sandbox: {filesystem: {write: [/no/such/dir], exec: [/bin, /usr/bin]}}\n",
			[]string{`routes[0].upstream.stdio.sandbox.filesystem.write[0]: /no/such/dir: no such file or directory (line 6)`}, false},
		{"command not executable within", "        sandbox: {filesystem: {read: [/usr]}}\n",
			[]string{"routes[0].upstream.stdio.sandbox.filesystem.exec: the command " + sh + " is not beneath any exec path: it could not be started (line 6)"}, false},
		{"no_new_privs off with filesystem", "        sandbox: {no_new_privs: false, filesystem: {exec: [/bin, /usr/bin]}}\n",
			[]string{"routes[0].upstream.stdio.sandbox.no_new_privs: must be true with filesystem: Landlock needs it (line 6)"}, false},
		{"negative limit", "        sandbox: {rlimits: {cpu_seconds: -1}}\n",
			[]string{"routes[0].upstream.stdio.sandbox.rlimits.cpu_seconds: must not be negative (line 6)"}, false},
		{"bad size", "        sandbox: {rlimits: {address_space: lots}}\n",
			[]string{`routes[0].upstream.stdio.sandbox.rlimits.address_space: invalid size "lots" (want e.g. 4MiB, 512KiB, 1024) (line 6)`}, false},
		{"memory too small", "        sandbox: {memory: 1KiB}\n",
			[]string{"routes[0].upstream.stdio.sandbox.memory: want at least 4MiB: no server starts in less (line 6)"}, false},
		{"negative cpu", "        sandbox: {cpu: -1}\n",
			[]string{"routes[0].upstream.stdio.sandbox.cpu: must be a number of CPU cores, not negative (0.5 is half a core) (line 6)"}, false},
		{"tiny cpu", "        sandbox: {cpu: 0.001}\n",
			[]string{"routes[0].upstream.stdio.sandbox.cpu: want at least 0.01 (a hundredth of a core) (line 6)"}, false},
		{"unknown user", "        sandbox: {user: no-such-user-here}\n",
			[]string{`routes[0].upstream.stdio.sandbox.user: user "no-such-user-here": user: unknown user no-such-user-here (line 6)`}, false},
		{"processes as root", "        sandbox: {rlimits: {processes: 8}}\n",
			[]string{"routes[0].upstream.stdio.sandbox.rlimits.processes: not enforced for root (RLIMIT_NPROC counts per user, and root is exempt): set sandbox.user to an unprivileged user of the route's own (line 6)"}, true},
		{"unknown key", "        sandbox: {rlimit: {}}\n",
			[]string{`routes[0].upstream.stdio.sandbox.rlimit: unknown field; did you mean "rlimits"? (line 6)`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && !rootOnly {
				t.Skip("as root only")
			}
			if diff := cmp.Diff(tt.want, problems(t, stdioRoute(tt.in))); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSandboxRelativePaths: relative paths are taken from the directory
// the process starts in, so a command built into the working directory
// can be confined to it.
func TestSandboxRelativePaths(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	in := "listeners: [{address: 127.0.0.1:0}]\nroutes:\n  - path: /mcp\n    upstream:\n      stdio:\n        command: bin/server\n" +
		"        sandbox: {filesystem: {read: [.], exec: [bin, /bin, /usr/bin]}}\n"
	cfg, err := LoadBytes([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Routes[0].Upstream.Stdio.Sandbox.Filesystem.Resolved("")
	if got.Read[0] != root || got.Exec[0] != filepath.Join(root, "bin") || got.Exec[1] != "/bin" {
		t.Errorf("resolved = %+v", got)
	}
	if got := cfg.Routes[0].Upstream.Stdio.Sandbox.Filesystem.Resolved("sub").Exec[0]; got != filepath.Join(root, "sub", "bin") {
		t.Errorf("resolved under dir sub: %s", got)
	}
}
