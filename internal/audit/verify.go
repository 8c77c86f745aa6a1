package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Summary is what Verify found in an intact trail.
type Summary struct {
	Records int
	// First and Last are the sequence numbers of the first and last
	// records; Anchor is the prev of the first, the hash of a record that
	// came before (removed by rotation, or in files not given), "" when the
	// trail starts at its beginning.
	First, Last uint64
	Anchor      string
	// Head is the hash of the last record.
	Head string
}

// Broken names the first record that breaks the chain.
type Broken struct {
	File string
	Line int
	// Seq and ID of the record, when it could be read.
	Seq uint64
	ID  string
	// What: edited, dropped, reordered, truncated, malformed.
	What   string
	Detail string
}

func (b *Broken) Error() string {
	who := ""
	if b.ID != "" {
		who = fmt.Sprintf(" (seq %d, id %s)", b.Seq, b.ID)
	}
	return fmt.Sprintf("%s:%d: record%s %s: %s", b.File, b.Line, who, b.What, b.Detail)
}

// source is one file of a trail, opened for reading.
type source struct {
	name  string
	first uint64
}

// Verify checks that the files hold one unbroken chain: every record's
// hash matches its content, its prev is the hash of the record before it,
// and sequence numbers follow one another. The files are taken in the
// order of their first records (rotation's names sort that way too, but
// globbing need not), so `mcpgate audit verify audit/*.jsonl` works. It
// returns a *Broken for the first record that breaks the chain.
func Verify(files []string) (Summary, error) {
	return verify(files, func(name string) (io.ReadCloser, error) { return os.Open(name) })
}

func verify(files []string, open func(string) (io.ReadCloser, error)) (Summary, error) {
	var sum Summary
	srcs := make([]source, 0, len(files))
	for _, f := range files {
		first, err := firstSeq(open, f)
		if err != nil {
			return sum, err
		}
		srcs = append(srcs, source{name: f, first: first})
	}
	slices.SortStableFunc(srcs, func(a, b source) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	var prev *Record
	for _, src := range srcs {
		rc, err := open(src.name)
		if err != nil {
			return sum, err
		}
		err = scan(rc, func(line int, r *Record, perr error) error {
			if perr != nil {
				b := &Broken{File: src.name, Line: line, What: "malformed", Detail: perr.Error()}
				if r != nil {
					b.Seq, b.ID = r.Seq, r.ID
				}
				switch {
				case errors.Is(perr, ErrEdited):
					b.What, b.Detail = "edited", "its hash does not match its content"
				case errors.Is(perr, errTruncated):
					b.What, b.Detail = "truncated", "the file ends inside it"
				}
				return b
			}
			if prev == nil {
				sum.First, sum.Anchor = r.Seq, r.Prev
			} else if err := follows(prev, r); err != nil {
				err.File, err.Line = src.name, line
				if err.What == "dropped" {
					// A record missing here may only have moved.
					if at := find(open, srcs, prev.Seq+1); at != "" {
						err.What = "reordered"
						err.Detail = fmt.Sprintf("seq %d follows seq %d; seq %d is at %s", r.Seq, prev.Seq, prev.Seq+1, at)
					}
				}
				return err
			}
			prev = r
			sum.Records++
			return nil
		})
		_ = rc.Close()
		if err != nil {
			return sum, err
		}
	}
	if prev != nil {
		sum.Last, sum.Head = prev.Seq, prev.Hash
	}
	return sum, nil
}

// follows checks that r comes right after prev.
func follows(prev, r *Record) *Broken {
	b := &Broken{Seq: r.Seq, ID: r.ID}
	switch {
	case r.Seq == prev.Seq+1 && r.Prev == prev.Hash:
		return nil
	case r.Seq > prev.Seq+1:
		b.What = "dropped"
		b.Detail = fmt.Sprintf("seq %d follows seq %d: %d record(s) missing before it", r.Seq, prev.Seq, r.Seq-prev.Seq-1)
	case r.Seq <= prev.Seq:
		b.What = "reordered"
		b.Detail = fmt.Sprintf("seq %d comes after seq %d", r.Seq, prev.Seq)
	default:
		// The right number, the wrong predecessor: the record before was
		// replaced, or this one was forged.
		b.What = "edited"
		b.Detail = fmt.Sprintf("its prev is not the hash of seq %d before it", prev.Seq)
	}
	return b
}

var errTruncated = errors.New("truncated")

// find names where a record of the sequence number is, "" if nowhere.
func find(open func(string) (io.ReadCloser, error), srcs []source, seq uint64) string {
	for _, src := range srcs {
		f, err := open(src.name)
		if err != nil {
			continue
		}
		br := bufio.NewReaderSize(f, 64<<10)
		for n := 1; ; n++ {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 && seqOf(line) == seq {
				_ = f.Close()
				return fmt.Sprintf("%s:%d", src.name, n)
			}
			if err != nil {
				break
			}
		}
		_ = f.Close()
	}
	return ""
}

// Scan reads a trail file record by record, handing each (or the error
// that record has: ErrMalformed, ErrEdited, or a truncated last line) to
// fn with its line number; fn's error stops the scan and is returned.
func Scan(path string, fn func(line int, r *Record, err error) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return scan(f, fn)
}

func scan(rd io.Reader, fn func(line int, r *Record, err error) error) error {
	br := bufio.NewReaderSize(rd, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return err
		}
		complete := err == nil
		line = bytes.TrimSuffix(line, []byte("\n"))
		r, perr := Parse(line)
		if !complete && perr != nil {
			perr = errTruncated
		} else if !complete {
			// A whole record without its newline: the writer stopped
			// between the two.
			perr = errTruncated
		}
		if ferr := fn(n, r, perr); ferr != nil {
			return ferr
		}
		if !complete {
			return nil
		}
	}
}

// firstSeq is the sequence number of a file's first record (0 when it
// has none that reads).
func firstSeq(open func(string) (io.ReadCloser, error), path string) (uint64, error) {
	f, err := open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 64<<10).ReadBytes('\n')
	if err != nil && err != io.EOF {
		return 0, err
	}
	return seqOf(line), nil
}

// Filter selects records (Query).
type Filter struct {
	// Session matches the session's fingerprint, or the session id itself
	// (which is fingerprinted to compare).
	Session   string
	Principal string
	// Tool matches tools/call records of the tool, and any record whose
	// tool, resource or prompt is the name.
	Tool string
	// Since keeps records at or after this time (zero: all).
	Since time.Time
}

// Match reports whether r passes the filter.
func (f *Filter) Match(r *Record) bool {
	if f.Session != "" && r.Session != f.Session && r.Session != fingerprint(f.Session) {
		return false
	}
	if f.Principal != "" && r.Principal != f.Principal {
		return false
	}
	if f.Tool != "" && r.Tool != f.Tool && r.Resource != f.Tool && r.Prompt != f.Tool {
		return false
	}
	if !f.Since.IsZero() {
		t, err := time.Parse(time.RFC3339Nano, r.Time)
		if err != nil || t.Before(f.Since) {
			return false
		}
	}
	return true
}

// Query writes the lines of the files' records that pass the filter, in
// the order of the files and within them; it does not check the chain
// (Verify does), and skips lines that are not records.
func Query(files []string, f Filter, w io.Writer) (int, error) {
	n := 0
	bw := bufio.NewWriter(w)
	for _, path := range files {
		fh, err := os.Open(path)
		if err != nil {
			return n, err
		}
		br := bufio.NewReaderSize(fh, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				r, perr := Parse(bytes.TrimSuffix(line, []byte("\n")))
				if r != nil && (perr == nil || errors.Is(perr, ErrEdited)) && f.Match(r) {
					if !strings.HasSuffix(string(line), "\n") {
						line = append(line, '\n')
					}
					_, _ = bw.Write(line)
					n++
				}
			}
			if err != nil {
				break
			}
		}
		_ = fh.Close()
	}
	return n, bw.Flush()
}

func fingerprint(id string) string { return core.Fingerprint(id) }
