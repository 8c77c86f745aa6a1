package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A queue stands between the trail and one sink: records go to a bounded
// channel while it has room; past that, and until everything spooled has
// been delivered, they are appended to the sink's spool file, so that the
// sink gets them in order and the data plane never waits for it. Only a
// failed spool write (its disk is full) drops a record.
type queue struct {
	sink  Sink
	name  string // metrics label
	log   *slog.Logger
	ch    chan []byte
	batch int
	flush time.Duration // longest wait for a batch to fill; 0: none

	// spooling is set while records go to the spool; read without mu on
	// the data plane's fast path, changed under mu.
	spooling atomic.Bool
	mu       sync.Mutex
	spool    *spool
	dropLog  bool // the first drop of a run has been logged

	wake    chan struct{}
	closing chan struct{}
	done    chan struct{}
	// ctx is what deliveries run under; cancelled when Close gives up.
	ctx    context.Context
	cancel context.CancelFunc

	// skip drops records with a sequence number at or below it: what a
	// file sink already holds when a spool from before a restart is
	// delivered again.
	skip uint64

	delivered atomic.Uint64
	dropped   atomic.Uint64
	backlog   atomic.Int64 // records in the channel and the spool
	// failures counts consecutive failed deliveries (for the log).
	failing bool
}

func newQueue(sink Sink, name, spoolDir string, buffer int, batch int, flush time.Duration, log *slog.Logger) (*queue, error) {
	sum := sha256.Sum256([]byte(sink.Key()))
	sp, err := openSpool(filepath.Join(spoolDir, name+"-"+hex.EncodeToString(sum[:4])+".spool"))
	if err != nil {
		return nil, err
	}
	q := &queue{
		sink: sink, name: name, log: log.With("sink", name), ch: make(chan []byte, buffer), batch: batch, flush: flush,
		spool: sp, wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}),
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	if n := sp.pending(); n > 0 {
		q.spooling.Store(true)
		q.backlog.Add(int64(n))
	}
	return q, nil
}

// enqueue takes one record; it is called in chain order (under the
// trail's lock) and never blocks on the sink.
func (q *queue) enqueue(line []byte) {
	if !q.spooling.Load() {
		select {
		case q.ch <- line:
			q.backlog.Add(1)
			return
		default:
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.spooling.Load() {
		// Checked again under mu: the deliverer may have just caught up.
		select {
		case q.ch <- line:
			q.backlog.Add(1)
			return
		default:
		}
		q.spooling.Store(true)
	}
	q.backlog.Add(1)
	q.spool.append(line)
	if q.spool.buffered() >= spoolChunk {
		q.flushSpool()
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// spoolChunk is how much the spool buffers in memory before it writes:
// one write per chunk, not per record, keeps spooling cheap for the data
// plane; a kill -9 can lose up to this much of spooled records.
const spoolChunk = 64 << 10

// flushSpool writes the spool's buffered records (under mu); those a full
// disk refuses are dropped, counted and logged once per run of drops.
func (q *queue) flushSpool() {
	n, err := q.spool.flush()
	if err != nil {
		q.dropped.Add(uint64(n))
		q.backlog.Add(-int64(n))
		if !q.dropLog {
			q.dropLog = true
			q.log.Error("audit_records_dropped", "error", err, "spool", q.spool.path, "count", n)
		}
		return
	}
	if n > 0 && q.dropLog {
		q.dropLog = false
		q.log.Warn("audit_spool_writable", "spool", q.spool.path, "dropped_total", q.dropped.Load())
	}
}

// run delivers until Close: the channel first (it holds the older
// records), then the spool, then back to the channel once the spool is
// empty.
func (q *queue) run() {
	defer close(q.done)
	var batch [][]byte
	for {
		batch = batch[:0]
		fromSpool := false
		select {
		case l := <-q.ch:
			batch = append(batch, l)
		default:
			if q.spooling.Load() {
				lines, err := q.spool.read(q.batch)
				if err != nil {
					q.log.Error("audit_spool_read_failed", "error", err)
				}
				if len(lines) == 0 {
					if q.caughtUp() {
						continue
					}
					if !q.idle() {
						q.mu.Lock()
						q.flushSpool() // kept for the next start
						q.mu.Unlock()
						return
					}
					continue
				}
				batch, fromSpool = lines, true
				break
			}
			select {
			case l := <-q.ch:
				batch = append(batch, l)
			case <-q.wake:
				continue
			case <-q.closing:
				if len(q.ch) == 0 && !q.spooling.Load() {
					return
				}
				continue
			}
		}
		if !fromSpool {
			batch = q.fill(batch)
		}
		n := len(batch)
		if !q.deliver(batch) {
			// Closing and the sink still fails: what is in hand goes back
			// to the front of the spool for the next start.
			q.persist(batch, fromSpool)
			return
		}
		if fromSpool {
			q.spool.commit(len(batch))
		}
		q.backlog.Add(-int64(n))
		if n < q.batch && q.flush <= 0 {
			q.linger()
		}
	}
}

// lingerFor is how long a deliverer that just emptied its queue waits
// before taking more: records arriving meanwhile queue without waking it,
// so that a busy gateway pays a wake-up per batch, not per record. It adds
// at most this much to the time a record waits in memory.
const lingerFor = time.Millisecond

func (q *queue) linger() {
	t := time.NewTimer(lingerFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-q.closing:
	}
}

// idle waits for something to do while the spool is momentarily empty of
// complete records; false once closing.
func (q *queue) idle() bool {
	select {
	case <-q.wake:
		return true
	case <-q.closing:
		return false
	}
}

// caughtUp switches back to the channel when the spool is fully
// delivered, and writes out what the spool buffers when that is all it
// has left; it reports whether there may be more to read at once.
func (q *queue) caughtUp() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.spool.buffered() > 0 {
		q.flushSpool()
		return true
	}
	if q.spool.pending() > 0 {
		return false
	}
	if err := q.spool.reset(); err != nil {
		q.log.Error("audit_spool_reset_failed", "error", err)
	}
	q.spooling.Store(false)
	return true
}

// fill adds what the channel holds, up to a batch, waiting up to flush
// for more when the sink prefers full batches.
func (q *queue) fill(batch [][]byte) [][]byte {
	var timer <-chan time.Time
	for len(batch) < q.batch {
		select {
		case l := <-q.ch:
			batch = append(batch, l)
			continue
		default:
		}
		if q.flush <= 0 {
			return batch
		}
		if timer == nil {
			t := time.NewTimer(q.flush)
			defer t.Stop()
			timer = t.C
		}
		select {
		case l := <-q.ch:
			batch = append(batch, l)
		case <-timer:
			return batch
		case <-q.closing:
			return batch
		case <-q.wake:
			// The channel is full and records spool: deliver now.
			return batch
		}
	}
	return batch
}

// deliver offers the batch until the sink takes it, backing off between
// tries; false if the queue is closing and gave up.
func (q *queue) deliver(batch [][]byte) bool {
	if q.skip > 0 {
		kept := batch[:0:0]
		for _, l := range batch {
			if seqOf(l) > q.skip {
				kept = append(kept, l)
			}
		}
		if len(kept) > 0 {
			q.skip = 0
		}
		batch = kept
		if len(batch) == 0 {
			return true
		}
	}
	backoff := 50 * time.Millisecond
	for {
		err := q.sink.Write(q.ctx, batch)
		if err == nil {
			if q.failing {
				q.failing = false
				q.log.Info("audit_sink_recovered")
			}
			q.delivered.Add(uint64(len(batch)))
			return true
		}
		if !q.failing {
			q.failing = true
			q.log.Warn("audit_sink_failing", "error", err)
		}
		select {
		case <-time.After(backoff):
		case <-q.ctx.Done():
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// persist keeps an undelivered batch, and everything behind it in the
// channel, at the front of the spool.
func (q *queue) persist(batch [][]byte, fromSpool bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var front [][]byte
	if !fromSpool {
		front = append(front, batch...)
	}
	for {
		select {
		case l := <-q.ch:
			front = append(front, l)
			continue
		default:
		}
		break
	}
	q.flushSpool()
	if err := q.spool.prepend(front); err != nil {
		q.dropped.Add(uint64(len(front)))
		q.log.Error("audit_records_dropped", "error", err, "spool", q.spool.path, "count", len(front))
	}
}

// close delivers what it can before ctx ends, keeps the rest in the
// spool, and closes the sink.
func (q *queue) close(ctx context.Context) error {
	close(q.closing)
	select {
	case <-q.done:
	case <-ctx.Done():
		q.cancel()
		<-q.done
	}
	q.cancel()
	q.mu.Lock()
	q.flushSpool()
	q.mu.Unlock()
	err := q.sink.Close()
	return errors.Join(err, q.spool.close())
}

// seqOf reads the sequence number a record line starts with.
func seqOf(line []byte) uint64 {
	const p = `{"seq":`
	if !bytes.HasPrefix(line, []byte(p)) {
		return 0
	}
	rest := line[len(p):]
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return 0
	}
	n, _ := strconv.ParseUint(string(rest[:i]), 10, 64)
	return n
}

// spool is an append-only file of record lines with a read offset; the
// offset is kept beside it (<name>.off) so that a restart does not
// deliver again what was delivered.
type spool struct {
	path string
	w    *os.File
	r    *os.File
	// wOff (the end of the last complete line) and n (the undelivered
	// lines) change under the queue's mu and are read by the deliverer
	// without it; rOff (the start of the first undelivered line), readN
	// and buf belong to the deliverer.
	wOff  atomic.Int64
	n     atomic.Int64
	rOff  int64
	readN int64
	buf   []byte
	// wbuf holds appended lines not yet written (bufN of them), under the
	// queue's mu.
	wbuf []byte
	bufN int
}

// buffered is how many bytes of records wait in memory to be written.
func (s *spool) buffered() int { return len(s.wbuf) }

// pending is how many records the spool holds undelivered.
func (s *spool) pending() int { return int(s.n.Load()) }

func openSpool(path string) (*spool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	s := &spool{path: path}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *spool) open() error {
	w, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	r, err := os.Open(s.path)
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("audit spool: %w", err)
	}
	s.w, s.r = w, r
	st, err := w.Stat()
	if err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	var data []byte
	if st.Mode().IsRegular() { // not a device a test or an operator put there
		if data, err = io.ReadAll(r); err != nil {
			return fmt.Errorf("audit spool: %w", err)
		}
	}
	// A partial last line (a crash mid-append) is dropped: the record it
	// held was never taken.
	end := int64(bytes.LastIndexByte(data, '\n') + 1)
	if end != int64(len(data)) {
		_ = w.Truncate(end)
	}
	s.wOff.Store(end)
	if off, err := os.ReadFile(s.path + ".off"); err == nil {
		if n, err := strconv.ParseInt(string(bytes.TrimSpace(off)), 10, 64); err == nil && n >= 0 && n <= end && (n == 0 || data[n-1] == '\n') {
			s.rOff = n
		}
	}
	s.n.Store(int64(bytes.Count(data[s.rOff:end], []byte{'\n'})))
	_, err = w.Seek(end, io.SeekStart)
	return err
}

// append buffers one line (flush writes it).
func (s *spool) append(line []byte) {
	s.wbuf = append(s.wbuf, line...)
	s.bufN++
	s.n.Add(1)
}

// flush writes the buffered lines; a failed or short write is undone so
// the file holds only complete lines, and the lines are dropped. It
// returns how many lines it wrote, or dropped with the error.
func (s *spool) flush() (int, error) {
	n, size := s.bufN, len(s.wbuf)
	if n == 0 {
		return 0, nil
	}
	_, err := s.w.Write(s.wbuf)
	s.wbuf, s.bufN = s.wbuf[:0], 0
	if cap(s.wbuf) > 4*spoolChunk {
		s.wbuf = nil
	}
	if err != nil {
		_ = s.w.Truncate(s.wOff.Load())
		_, _ = s.w.Seek(s.wOff.Load(), io.SeekStart)
		s.n.Add(-int64(n))
		return n, err
	}
	s.wOff.Add(int64(size))
	return n, nil
}

// read returns up to max lines from the read offset without consuming
// them (commit does).
func (s *spool) read(max int) ([][]byte, error) {
	s.readN = 0
	end := s.wOff.Load()
	if end <= s.rOff {
		return nil, nil
	}
	var lines [][]byte
	chunk := int64(1 << 20)
	for {
		size := min(chunk, end-s.rOff)
		if int64(cap(s.buf)) < size {
			s.buf = make([]byte, size)
		}
		b := s.buf[:size]
		if _, err := s.r.ReadAt(b, s.rOff); err != nil && err != io.EOF {
			return nil, err
		}
		for len(b) > 0 && len(lines) < max {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				break
			}
			lines = append(lines, bytes.Clone(b[:i+1]))
			s.readN += int64(i + 1)
			b = b[i+1:]
		}
		if len(lines) > 0 || size == end-s.rOff {
			return lines, nil
		}
		chunk *= 4 // a line longer than the chunk
	}
}

// commit consumes the lines the last read returned.
func (s *spool) commit(n int) {
	s.rOff += s.readN
	s.n.Add(-int64(n))
	_ = os.WriteFile(s.path+".off", strconv.AppendInt(nil, s.rOff, 10), 0o640)
}

// reset empties a fully delivered spool.
func (s *spool) reset() error {
	if err := s.w.Truncate(0); err != nil {
		return err
	}
	if _, err := s.w.Seek(0, io.SeekStart); err != nil {
		return err
	}
	s.wOff.Store(0)
	s.n.Store(0)
	s.rOff = 0
	err := os.Remove(s.path + ".off")
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// prepend rewrites the spool as lines followed by what is undelivered.
func (s *spool) prepend(lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	rest := make([]byte, s.wOff.Load()-s.rOff)
	if _, err := s.r.ReadAt(rest, s.rOff); err != nil && err != io.EOF {
		return err
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
	}
	b.Write(rest)
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	_ = os.Remove(s.path + ".off")
	_ = s.w.Close()
	_ = s.r.Close()
	s.rOff = 0
	return s.open()
}

func (s *spool) close() error {
	return errors.Join(s.w.Sync(), s.w.Close(), s.r.Close())
}
