package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sink is where a trail delivers records. A sink gets every record once,
// in order, in batches (each line a record ending in '\n'); Write
// returns an error when the batch was not taken, and the trail offers the
// same batch again later (with backoff), so a sink that takes part of a
// batch before failing may see those records twice. Write and Close are
// called from one goroutine.
type Sink interface {
	// Name is the sink's label in metrics and logs: file, stdout, http.
	Name() string
	// Key tells sinks of one kind apart across restarts (the file's path,
	// the collector's URL); it names the sink's spool.
	Key() string
	Write(ctx context.Context, lines [][]byte) error
	Close() error
}

// tailer is a sink that can read back the last record it holds, so the
// chain continues from it after a restart.
type tailer interface {
	Last() ([]byte, error)
}

// Fsync policies (FileOptions.Fsync).
const (
	// FsyncInterval syncs at most once per FsyncEvery, after writes
	// (appendfsync everysec): the default.
	FsyncInterval = "interval"
	FsyncBatch    = "batch"
	FsyncAlways   = "always"
	FsyncNever    = "never"
)

// FsyncEvery is how long written records may wait for a sync under
// FsyncInterval.
const FsyncEvery = time.Second

// FileOptions configure a file sink.
type FileOptions struct {
	// Path of the current file. Rotated files are renamed beside it to
	// <base>-<UTC time>.<ext>, which sort in the order they were written.
	Path string
	// MaxSize rotates the file before a write would take it past this.
	// Zero: never rotate.
	MaxSize int64
	// MaxFiles is how many files are kept, the current one included
	// (oldest rotated files are removed). Zero or less keeps every file.
	MaxFiles int
	// Fsync is FsyncInterval (the default), FsyncBatch, FsyncAlways or
	// FsyncNever; every policy syncs at rotation and Close.
	Fsync string
}

// FileSink writes records to a file, rotating it by size. Every batch is
// written with one write(2) when it is taken, so what a kill -9 can lose
// is only what was still queued in memory; Fsync bounds what a power loss
// can.
type FileSink struct {
	opts FileOptions
	// mu guards f against the interval sync's timer.
	mu   sync.Mutex
	f    *os.File
	size int64
	// syncing is set while an interval sync is scheduled (timer).
	syncing bool
	timer   *time.Timer
	// rotateFirst: the file ends with a partial line (a crash mid-write):
	// it is rotated away untouched before the first write, as evidence.
	rotateFirst bool
	buf         []byte
}

// NewFileSink opens (or creates) the file, and its directory.
func NewFileSink(o FileOptions) (*FileSink, error) {
	if o.Fsync == "" {
		o.Fsync = FsyncInterval
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("audit file sink: %w", err)
	}
	s := &FileSink{opts: o}
	if err := s.open(); err != nil {
		return nil, err
	}
	if s.size > 0 {
		if r, err := os.Open(o.Path); err == nil {
			var last [1]byte
			if _, err := r.ReadAt(last[:], s.size-1); err == nil && last[0] != '\n' {
				s.rotateFirst = true
			}
			_ = r.Close()
		}
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit file sink: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Name implements Sink.
func (s *FileSink) Name() string { return "file" }

// Key implements Sink.
func (s *FileSink) Key() string { return s.opts.Path }

// Write implements Sink: the batch is written in as few writes as
// rotation allows, and synced as Fsync says.
func (s *FileSink) Write(_ context.Context, lines [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rotateFirst {
		if err := s.rotate(); err != nil {
			return err
		}
		s.rotateFirst = false
	}
	for len(lines) > 0 {
		s.buf = s.buf[:0]
		n := 0
		for _, l := range lines {
			if s.opts.MaxSize > 0 && s.size+int64(len(s.buf)+len(l)) > s.opts.MaxSize && (s.size > 0 || len(s.buf) > 0) {
				break
			}
			s.buf = append(s.buf, l...)
			n++
			if s.opts.Fsync == FsyncAlways {
				break
			}
		}
		if n == 0 {
			if err := s.rotate(); err != nil {
				return err
			}
			continue
		}
		if _, err := s.f.Write(s.buf); err != nil {
			return fmt.Errorf("audit file sink: %w", err)
		}
		s.size += int64(len(s.buf))
		lines = lines[n:]
		if s.opts.Fsync == FsyncAlways {
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("audit file sink: %w", err)
			}
		}
	}
	switch s.opts.Fsync {
	case FsyncBatch:
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("audit file sink: %w", err)
		}
	case FsyncInterval:
		if !s.syncing {
			s.syncing = true
			s.timer = time.AfterFunc(FsyncEvery, s.intervalSync)
		}
	}
	return nil
}

// intervalSync is the sync FsyncInterval schedules after a write.
func (s *FileSink) intervalSync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncing = false
	if s.f != nil {
		_ = s.f.Sync()
	}
}

// rotate closes the current file, renames it, opens a new one and
// removes the oldest files past MaxFiles.
func (s *FileSink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	base, ext := s.split()
	name := base + "-" + time.Now().UTC().Format("20060102T150405.000000000Z") + ext
	if err := os.Rename(s.opts.Path, name); err != nil {
		if oerr := s.open(); oerr != nil {
			return errors.Join(err, oerr)
		}
		return fmt.Errorf("audit file sink: %w", err)
	}
	if err := s.open(); err != nil {
		return err
	}
	if s.opts.MaxFiles > 0 {
		old := s.Rotated()
		for len(old) > s.opts.MaxFiles-1 {
			_ = os.Remove(old[0])
			old = old[1:]
		}
	}
	return nil
}

func (s *FileSink) split() (base, ext string) { return splitExt(s.opts.Path) }

func splitExt(path string) (base, ext string) {
	ext = filepath.Ext(path)
	return strings.TrimSuffix(path, ext), ext
}

// Rotated lists the rotated files, oldest first.
func (s *FileSink) Rotated() []string { return rotated(s.opts.Path) }

func rotated(path string) []string {
	base, ext := splitExt(path)
	names, _ := filepath.Glob(globEscape(base) + "-*" + globEscape(ext))
	slices.Sort(names)
	return names
}

// Files lists a file sink's files at path in the order of the chain: the
// rotated ones, oldest first, then path itself if it exists (what
// Verify and Query take).
func Files(path string) []string {
	out := rotated(path)
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Last implements tailer: the last complete record of the current file,
// or of the newest rotated one when the current file holds none.
func (s *FileSink) Last() ([]byte, error) {
	files := append(s.Rotated(), s.opts.Path)
	for i := len(files) - 1; i >= 0; i-- {
		l, err := lastLine(files[i])
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if l != nil {
			return l, nil
		}
	}
	return nil, nil
}

// lastLine is the last complete line of a file (without its newline);
// nil when it holds none.
func lastLine(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	end := st.Size()
	for chunk := int64(64 << 10); ; chunk *= 4 {
		start := max(0, end-chunk)
		b := make([]byte, end-start)
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return nil, err
		}
		i := bytes.LastIndexByte(b, '\n')
		if i < 0 {
			if start == 0 {
				return nil, nil
			}
			continue
		}
		b = b[:i]
		if j := bytes.LastIndexByte(b, '\n'); j >= 0 {
			return b[j+1:], nil
		}
		if start == 0 {
			return b, nil
		}
	}
}

// Close implements Sink.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	err := errors.Join(s.f.Sync(), s.f.Close())
	s.f = nil
	return err
}

// WriterSink writes records to a stream (the standard output).
type WriterSink struct {
	name string
	w    *bufio.Writer
	mu   sync.Mutex
}

// NewWriterSink writes to w under the given name ("stdout").
func NewWriterSink(name string, w io.Writer) *WriterSink {
	return &WriterSink{name: name, w: bufio.NewWriterSize(w, 64<<10)}
}

// Name implements Sink.
func (s *WriterSink) Name() string { return s.name }

// Key implements Sink.
func (s *WriterSink) Key() string { return s.name }

// Write implements Sink.
func (s *WriterSink) Write(_ context.Context, lines [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		if _, err := s.w.Write(l); err != nil {
			return err
		}
	}
	return s.w.Flush()
}

// Close implements Sink; the stream itself is not closed.
func (s *WriterSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}

// HTTPOptions configure an HTTP sink.
type HTTPOptions struct {
	URL string
	// Header is sent with every batch; its values are secrets.
	Header http.Header
	// Batch is the most records per POST. Default 500.
	Batch int
	// Flush is the longest a record waits for its batch to fill.
	// Default 1s.
	Flush time.Duration
	// Client sends the batches. If nil, a client with a 10s timeout.
	Client *http.Client
}

// HTTPSink POSTs batches of records as newline-delimited JSON
// (application/x-ndjson). A batch is taken when the collector answers
// 2xx; anything else is a failure and the batch is offered again.
type HTTPSink struct {
	opts HTTPOptions
	buf  bytes.Buffer
}

// NewHTTPSink makes an HTTP sink.
func NewHTTPSink(o HTTPOptions) *HTTPSink {
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Flush <= 0 {
		o.Flush = time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &HTTPSink{opts: o}
}

// Name implements Sink.
func (s *HTTPSink) Name() string { return "http" }

// Key implements Sink.
func (s *HTTPSink) Key() string { return s.opts.URL }

// Write implements Sink.
func (s *HTTPSink) Write(ctx context.Context, lines [][]byte) error {
	s.buf.Reset()
	for _, l := range lines {
		s.buf.Write(l)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL, bytes.NewReader(s.buf.Bytes()))
	if err != nil {
		return err
	}
	for k, v := range s.opts.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("audit http sink: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("audit http sink: collector answered %s", resp.Status)
	}
	return nil
}

// Close implements Sink.
func (s *HTTPSink) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}
