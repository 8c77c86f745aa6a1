package tokens

import (
	"fmt"
	"sync"
	"unicode"
	"unicode/utf8"

	tiktoken "github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// Names of the encodings.
const (
	O200K  = "o200k_base"
	CL100K = "cl100k_base"
	Bytes4 = "bytes4"
)

// Counter counts the tokens of text. Safe for concurrent use.
type Counter interface {
	Count(text string) int64
}

type bytes4 struct{}

func (bytes4) Count(text string) int64 { return (int64(len(text)) + 3) / 4 }

type bpe struct{ enc *tiktoken.Tiktoken }

// maxPiece bounds what is byte-pair encoded at once; a run of text
// without white space is cut every maxWord bytes.
const (
	maxPiece = 1024
	maxWord  = 128
)

func (b bpe) Count(text string) int64 {
	var n int64
	for len(text) > 0 {
		cut := len(text)
		if cut > maxPiece {
			cut = split(text)
		}
		n += int64(len(b.enc.EncodeOrdinary(text[:cut])))
		text = text[cut:]
	}
	return n
}

// split is where to cut text longer than maxPiece: before the last white
// space of its first maxPiece bytes, else at the last rune boundary within
// its first maxWord bytes.
func split(text string) int {
	for i := maxPiece; i > 0; {
		r, size := utf8.DecodeLastRuneInString(text[:i])
		i -= size
		if i > 0 && unicode.IsSpace(r) {
			return i
		}
	}
	i := maxWord
	for i > 0 && !utf8.RuneStart(text[i]) {
		i--
	}
	if i == 0 {
		return maxWord
	}
	return i
}

var (
	loader   sync.Once
	encoders sync.Map // name → func() (Counter, error)
)

// New returns the counter of the named encoding (O200K, CL100K, Bytes4).
func New(name string) (Counter, error) {
	switch name {
	case Bytes4:
		return bytes4{}, nil
	case O200K, CL100K:
	default:
		return nil, fmt.Errorf("tokens: unknown tokenizer %q (want %s, %s or %s)", name, O200K, CL100K, Bytes4)
	}
	f, _ := encoders.LoadOrStore(name, sync.OnceValues(func() (Counter, error) {
		loader.Do(func() { tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader()) })
		enc, err := tiktoken.GetEncoding(name)
		if err != nil {
			return nil, fmt.Errorf("tokens: load %s: %w", name, err)
		}
		return bpe{enc}, nil
	}))
	return f.(func() (Counter, error))()
}
