package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// placeholders are words found in example and made-up secrets. A secret
// containing one was copied from documentation, not generated.
var placeholders = []string{"replace", "change", "example", "secret", "password", "placeholder", "dummy", "default", "sample"}

// MinSecretBytes is the shortest id key secret accepted.
const MinSecretBytes = 32

// minSecretBits is the least estimated entropy of an id key secret: the
// length times the Shannon entropy of its own characters, not counting
// the characters that continue a run (aaaa, 1234, dcba). It is a floor
// against made-up secrets, not a measure of real strength: a generated
// one (base64 or hex of 32 random bytes, ~150 bits by this estimate)
// clears it by far, and so does even hex of 16 random bytes (~110, rarely below 85).
const minSecretBits = 64

// weakSecret says why s is not fit to sign session ids, or "" when it is.
func weakSecret(s string) string {
	if len(s) < MinSecretBytes {
		return fmt.Sprintf("want at least %d bytes, got %d", MinSecretBytes, len(s))
	}
	if w := placeholderIn(s); w != "" {
		return fmt.Sprintf("looks like a placeholder (contains %q), not a generated secret", w)
	}
	if bits := entropyBits(s); bits < minSecretBits {
		return fmt.Sprintf("too predictable (about %.0f bits of entropy, want at least %d): repeated or patterned characters", bits, minSecretBits)
	}
	return ""
}

// placeholderIn returns the placeholder word s contains, or "". Words of
// six letters or more count anywhere, separators ignored ("change-me",
// "mysecretkey"): a random base64 string holds one by chance about once
// in ten million. A shorter word counts only standing alone (at an end of
// s or beside a character that is not a letter), since one in 600,000
// random strings would hold "dummy" somewhere.
func placeholderIn(s string) string {
	lower := strings.ToLower(s)
	joined := strings.NewReplacer("-", "", "_", "", " ", "").Replace(lower)
	for _, w := range placeholders {
		if len(w) >= 6 {
			if strings.Contains(joined, w) {
				return w
			}
			continue
		}
		for i := 0; ; {
			j := strings.Index(lower[i:], w)
			if j < 0 {
				break
			}
			start, end := i+j, i+j+len(w)
			if (start == 0 || !isLetter(lower[start-1])) && (end == len(lower) || !isLetter(lower[end])) {
				return w
			}
			i = start + 1
		}
	}
	return ""
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' }

// entropyBits estimates the information in s from its character
// frequencies, counting for nothing each character that continues a run:
// one whose step from the previous character (-1, 0 or +1) repeats the
// step before it.
func entropyBits(s string) float64 {
	counts := map[byte]int{}
	for i := range len(s) {
		counts[s[i]]++
	}
	var perChar float64
	for _, c := range counts {
		p := float64(c) / float64(len(s))
		perChar -= p * math.Log2(p)
	}
	n := 0
	for i := range len(s) {
		if i >= 2 {
			step, prev := int(s[i])-int(s[i-1]), int(s[i-1])-int(s[i-2])
			if step == prev && step >= -1 && step <= 1 {
				continue
			}
		}
		n++
	}
	return perChar * float64(n)
}

// checkStdio checks what a stdio upstream needs to start: a command that
// resolves to an executable file the way the process will be started
// (PATH for a bare name; relative to dir for a path), and dir itself.
// Without it every initialize would fail with 502.
func checkStdio(path string, st *StdioUpstream, bad func(path, format string, args ...any)) {
	if st.Dir != "" {
		if fi, err := os.Stat(st.Dir); err != nil {
			bad(path+".dir", "%v", unwrapPath(err))
		} else if !fi.IsDir() {
			bad(path+".dir", "%q is not a directory", st.Dir)
		}
	}
	if st.Command == "" {
		bad(path+".command", "required")
		return
	}
	if _, err := ResolveCommand(st.Command, st.Dir); err != nil {
		bad(path+".command", "%v", err)
	}
}

// ResolveCommand finds the executable that running command in dir would
// start: a bare name is looked up in PATH; a path (with a slash) is
// taken relative to dir, or to the working directory when dir is empty.
func ResolveCommand(command, dir string) (string, error) {
	if !strings.ContainsRune(command, filepath.Separator) && !strings.ContainsRune(command, '/') {
		p, err := exec.LookPath(command)
		switch {
		case errors.Is(err, exec.ErrDot):
			return "", fmt.Errorf("%q resolves to %s in the working directory, which is not run from PATH; write ./%s", command, p, command)
		case err != nil:
			return "", fmt.Errorf("%q not found in PATH", command)
		}
		return p, nil
	}
	p := command
	if dir != "" && !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return "", unwrapPath(err)
	case fi.IsDir():
		return "", fmt.Errorf("%s is a directory", p)
	case fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("%s is not executable", p)
	}
	return p, nil
}

// unwrapPath words an os error as "PATH: reason".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}
