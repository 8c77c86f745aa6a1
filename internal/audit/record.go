package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Record is one audit record as it is read back (Parse). Fields that do
// not apply are empty and absent from the encoding. The members appear in
// the encoding in the order of this struct, hash last.
type Record struct {
	Seq  uint64 `json:"seq"`
	Time string `json:"time"`
	ID   string `json:"id"`
	// Kind is message, session, refused, originated, decision, admin or
	// trail.
	Kind string `json:"kind"`
	// Event says what happened for kinds other than message: created,
	// resumed, evicted, ended (session); started, stopped (trail); the
	// control plane's tool (admin).
	Event     string `json:"event,omitempty"`
	Direction string `json:"direction,omitempty"`
	Era       string `json:"era,omitempty"`
	// Session is the session's fingerprint (core.Fingerprint), never the
	// id itself: the id is a bearer handle.
	Session   string `json:"session,omitempty"`
	Principal string `json:"principal,omitempty"`
	Tenant    string `json:"tenant,omitempty"`
	Route     string `json:"route,omitempty"`
	// Type is the JSON-RPC message's: request, notification, response, error.
	Type     string `json:"type,omitempty"`
	Method   string `json:"method,omitempty"`
	RPCID    string `json:"rpc_id,omitempty"`
	Tool     string `json:"tool,omitempty"`
	Resource string `json:"resource,omitempty"`
	Prompt   string `json:"prompt,omitempty"`
	// Params, Result and Error are the message's members, redacted; absent
	// without payloads.
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  json.RawMessage `json:"error,omitempty"`
	// Truncated describes a payload longer than max_payload_bytes.
	Truncated *Truncated `json:"truncated,omitempty"`
	// Size is the message's size in bytes as it crossed the gateway.
	Size      int     `json:"size,omitempty"`
	LatencyMS float64 `json:"latency_ms,omitempty"`
	// Outcome is ok, error or refused (or a decision's action).
	Outcome    string `json:"outcome,omitempty"`
	Code       int    `json:"code,omitempty"`
	Status     int    `json:"status,omitempty"`
	Check      string `json:"check,omitempty"`
	Origin     string `json:"origin,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	Stage      string `json:"stage,omitempty"`
	Policy     string `json:"policy,omitempty"`
	Rule       string `json:"rule,omitempty"`
	Quota      string `json:"quota,omitempty"`
	Action     string `json:"action,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Prev       string `json:"prev"`
	Hash       string `json:"hash"`
}

// Truncated describes a payload cut to max_payload_bytes: which member,
// its full size and SHA-256 (after redaction), and its beginning.
type Truncated struct {
	Member string `json:"member"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
	Head   string `json:"head"`
}

// The canonical JSON of a record is the encoding mcpgate writes: compact,
// members in Record's order, empty ones left out, strings escaped as
// appendString does, payloads as their redacted bytes. Its hash is the
// SHA-256 of that encoding without the hash member (the record up to
// `,"hash":"…"` followed by `}`), so a record can be checked with any
// SHA-256 tool:
//
//	sed 's/,"hash":"[0-9a-f]*"}$/}/' | sha256sum
const hashSuffix = `,"hash":"`

// hashLen is the length of the hash member and the closing brace:
// `,"hash":"` + 64 hex digits + `"}`.
const hashLen = len(hashSuffix) + 64 + 2

// body is a record being encoded: its members from kind on, before seq,
// time, id and prev are known (those are set in chain order).
type body struct{ b []byte }

func (e *body) str(key, v string) {
	if v == "" {
		return
	}
	e.b = append(e.b, ',', '"')
	e.b = append(e.b, key...)
	e.b = append(e.b, '"', ':')
	e.b = core.AppendJSONString(e.b, v)
}

func (e *body) raw(key string, v []byte) {
	if len(v) == 0 {
		return
	}
	e.b = append(e.b, ',', '"')
	e.b = append(e.b, key...)
	e.b = append(e.b, '"', ':')
	e.b = append(e.b, v...)
}

func (e *body) int(key string, v int) {
	if v == 0 {
		return
	}
	e.b = append(e.b, ',', '"')
	e.b = append(e.b, key...)
	e.b = append(e.b, '"', ':')
	e.b = strconv.AppendInt(e.b, int64(v), 10)
}

func (e *body) float(key string, v float64) {
	if v == 0 {
		return
	}
	e.b = append(e.b, ',', '"')
	e.b = append(e.b, key...)
	e.b = append(e.b, '"', ':')
	e.b = strconv.AppendFloat(e.b, v, 'f', -1, 64)
}

func (e *body) truncated(t *Truncated) {
	if t == nil {
		return
	}
	e.b = append(e.b, `,"truncated":{"member":`...)
	e.b = core.AppendJSONString(e.b, t.Member)
	e.b = append(e.b, `,"size":`...)
	e.b = strconv.AppendInt(e.b, int64(t.Size), 10)
	e.b = append(e.b, `,"sha256":`...)
	e.b = core.AppendJSONString(e.b, t.SHA256)
	e.b = append(e.b, `,"head":`...)
	e.b = core.AppendJSONString(e.b, t.Head)
	e.b = append(e.b, '}')
}

// encodeBody encodes r's members from kind to reason (everything but
// seq, time, id, prev and hash), each preceded by a comma.
func encodeBody(dst []byte, r *Record) []byte {
	e := body{dst}
	e.str("kind", r.Kind)
	e.str("event", r.Event)
	e.str("direction", r.Direction)
	e.str("era", r.Era)
	e.str("session", r.Session)
	e.str("principal", r.Principal)
	e.str("tenant", r.Tenant)
	e.str("route", r.Route)
	e.str("type", r.Type)
	e.str("method", r.Method)
	e.str("rpc_id", r.RPCID)
	e.str("tool", r.Tool)
	e.str("resource", r.Resource)
	e.str("prompt", r.Prompt)
	e.raw("params", r.Params)
	e.raw("result", r.Result)
	e.raw("error", r.Error)
	e.truncated(r.Truncated)
	e.int("size", r.Size)
	e.float("latency_ms", r.LatencyMS)
	e.str("outcome", r.Outcome)
	e.int("code", r.Code)
	e.int("status", r.Status)
	e.str("check", r.Check)
	e.str("origin", r.Origin)
	e.str("remote_addr", r.RemoteAddr)
	e.str("stage", r.Stage)
	e.str("policy", r.Policy)
	e.str("rule", r.Rule)
	e.str("quota", r.Quota)
	e.str("action", r.Action)
	e.str("reason", r.Reason)
	return e.b
}

// seal makes the record's line: the chain members, the body, prev and
// hash, and a newline. It returns the line and the record's hash.
func seal(dst []byte, seq uint64, t time.Time, chainID string, bodyBytes []byte, prev string) ([]byte, string) {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","id":"`...)
	dst = append(dst, chainID...)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, '"')
	dst = append(dst, bodyBytes...)
	dst = append(dst, `,"prev":"`...)
	dst = append(dst, prev...)
	dst = append(dst, `"}`...)
	sum := sha256.Sum256(dst)
	var h [64]byte
	hex.Encode(h[:], sum[:])
	dst = dst[:len(dst)-1]
	dst = append(dst, hashSuffix...)
	dst = append(dst, h[:]...)
	dst = append(dst, '"', '}', '\n')
	return dst, string(h[:])
}

// Errors of Parse, which Verify names.
var (
	// ErrMalformed: the line is not a record as mcpgate writes them.
	ErrMalformed = errors.New("not an audit record")
	// ErrEdited: the record's hash does not match its content.
	ErrEdited = errors.New("edited: its hash does not match its content")
)

// Parse reads one record line (without its newline) and checks its hash
// against its content. The record is returned whenever it decodes, also
// with ErrEdited, so a caller can name it.
func Parse(line []byte) (*Record, error) {
	n := len(line)
	if n < hashLen+2 || line[0] != '{' || string(line[n-hashLen:n-hashLen+len(hashSuffix)]) != hashSuffix || line[n-2] != '"' || line[n-1] != '}' {
		return nil, ErrMalformed
	}
	hexHash := line[n-66 : n-2]
	var want [32]byte
	if _, err := hex.Decode(want[:], hexHash); err != nil || bytes.ContainsAny(hexHash, "ABCDEF") {
		return nil, ErrMalformed
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, ErrMalformed
	}
	if r.Hash != string(hexHash) {
		// A second hash member earlier in the line: not ours.
		return nil, ErrMalformed
	}
	h := sha256.New()
	h.Write(line[:n-hashLen])
	h.Write([]byte{'}'})
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return &r, ErrEdited
	}
	return &r, nil
}
