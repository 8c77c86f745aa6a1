package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate/internal/core"
)

// maxSecretsFile bounds what is read of a secrets file.
const maxSecretsFile = 4 << 20

// recheck is how often a secrets file in use is looked at for a change.
const recheck = time.Second

// secretsFile is a principal → secret table read from a file, read again
// when the file changes: whoever needs a secret at most once a second
// looks at the file's modification time, size and inode, and reloads it
// when one changed. A file that no longer loads leaves the table as it was.
type secretsFile struct {
	path string
	log  *slog.Logger

	table   atomic.Pointer[map[string]string]
	checked atomic.Int64 // unix nanoseconds of the last look
	mu      sync.Mutex   // one reload at a time
	stamp   fileStamp    // of the table in force; guarded by mu
	failed  *fileStamp   // of the last change that did not load; guarded by mu
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func openSecrets(path string, log *slog.Logger) (*secretsFile, error) {
	f := &secretsFile{path: path, log: log}
	t, st, err := loadSecrets(path)
	if err != nil {
		return nil, err
	}
	f.table.Store(&t)
	f.stamp = st
	f.checked.Store(time.Now().UnixNano())
	return f, nil
}

func (f *secretsFile) lookup(principal string) (string, bool) {
	f.maybeReload()
	s, ok := (*f.table.Load())[principal]
	return s, ok
}

func (f *secretsFile) maybeReload() {
	now := time.Now().UnixNano()
	last := f.checked.Load()
	if now-last < int64(recheck) || !f.checked.CompareAndSwap(last, now) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, _ := stampOf(f.path) // a file gone has the zero stamp
	if st == f.stamp || f.failed != nil && *f.failed == st {
		return // unchanged, or a change already found not to load
	}
	t, loaded, err := loadSecrets(f.path)
	if err != nil {
		f.log.Warn("credentials_reload_failed", "file", f.path, "error", err)
		f.failed = &st
		return
	}
	f.table.Store(&t)
	f.stamp, f.failed = loaded, nil
	f.log.Info("credentials_reloaded", "file", f.path, "principals", len(t))
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), ino: inode(fi)}, nil
}

// loadSecrets reads and checks a secrets file: mode 0600 or stricter,
// owned by the gateway's user, a YAML mapping of principals to secrets.
func loadSecrets(path string) (map[string]string, fileStamp, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, pathErr(err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fileStamp{}, pathErr(err)
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size(), ino: inode(fi)}
	if !fi.Mode().IsRegular() {
		return nil, st, fmt.Errorf("%s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, st, fmt.Errorf("%s: mode %04o lets other users read the secrets: want 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	if err := ownedByUs(fi); err != nil {
		return nil, st, fmt.Errorf("%s: %w", path, err)
	}
	if fi.Size() > maxSecretsFile {
		return nil, st, fmt.Errorf("%s: larger than %d bytes", path, maxSecretsFile)
	}
	data := make([]byte, fi.Size())
	if _, err := fh.ReadAt(data, 0); err != nil {
		return nil, st, pathErr(err)
	}
	t, err := ParseSecrets(data)
	if err != nil {
		return nil, st, fmt.Errorf("%s: %w", path, err)
	}
	return t, st, nil
}

func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// ParseSecrets reads a secrets file's text: a YAML mapping of principals
// to secrets, both non-empty strings; a secret holds no control character
// but tab. An empty document is an empty table. Errors name lines, never
// a principal or a secret.
func ParseSecrets(data []byte) (map[string]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("not YAML")
	}
	t := map[string]string{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return t, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return t, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of principals to secrets", root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!null" || k.Value == "" {
			return nil, fmt.Errorf("line %d: want a principal (a non-empty string)", k.Line)
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
			return nil, fmt.Errorf("line %d: want a secret (a non-empty string)", v.Line)
		}
		if !core.ValidHeaderValue(v.Value) {
			return nil, fmt.Errorf("line %d: the secret holds control characters", v.Line)
		}
		if _, dup := t[k.Value]; dup {
			return nil, fmt.Errorf("line %d: principal listed twice", k.Line)
		}
		t[k.Value] = v.Value
	}
	return t, nil
}
