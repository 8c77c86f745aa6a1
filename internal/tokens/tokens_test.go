package tokens

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestKnownCounts: counts of known strings in both encodings, as the
// reference tokenizer gives them (the ids are checked in TestKnownIDs).
func TestKnownCounts(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		enc, text string
		want      int64
	}{
		{O200K, "hello world", 2},
		{CL100K, "hello world", 2},
		{O200K, "", 0},
		{CL100K, "tiktoken is great!", 6},
		{O200K, "tiktoken is great!", 6},
		{CL100K, "antidisestablishmentarianism", 6},
		{O200K, "antidisestablishmentarianism", 6},
		// Special tokens in content are text, never control tokens.
		{CL100K, "<|endoftext|> is text here", 10},
		{Bytes4, "hello world", 3},
		{Bytes4, "", 0},
		{Bytes4, "abcd", 1},
	} {
		c, err := New(tt.enc)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Count(tt.text); got != tt.want {
			t.Errorf("%s(%q) = %d, want %d", tt.enc, tt.text, got, tt.want)
		}
	}
	if _, err := New("gpt2"); err == nil {
		t.Error("New(gpt2) succeeded")
	}
}

// TestKnownIDs: the embedded encodings are the reference ones, by the
// ids they give known strings.
func TestKnownIDs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		enc, text string
		want      []int
	}{
		{CL100K, "hello world", []int{15339, 1917}},
		{CL100K, "tiktoken is great!", []int{83, 1609, 5963, 374, 2294, 0}},
		{O200K, "hello world", []int{24912, 2375}},
		{O200K, "antidisestablishmentarianism", []int{493, 129901, 376, 160388, 21203, 2367}},
	} {
		c, err := New(tt.enc)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.(bpe).enc.EncodeOrdinary(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("%s(%q) = %v, want %v", tt.enc, tt.text, got, tt.want)
		}
	}
}

// TestLongText: long text is counted in pieces, without losing any of it:
// prose counts as the sum of its paragraphs, and a run without white
// space (base64, a blob) is cut, at rune boundaries.
func TestLongText(t *testing.T) {
	t.Parallel()
	c, err := New(O200K)
	if err != nil {
		t.Fatal(err)
	}
	para := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 10)
	one := c.Count(para)
	if got := c.Count(strings.Repeat(para, 50)); got < 50*one-50 || got > 50*one+50 {
		t.Errorf("50 paragraphs = %d tokens, one = %d", got, one)
	}
	blob := strings.Repeat("é", 5000) // 2-byte runes, no white space
	if got := c.Count(blob); got < 500 || got > 5000 {
		t.Errorf("blob of 5000 runes = %d tokens", got)
	}
	for _, s := range []string{strings.Repeat("é", 3000), strings.Repeat("a", 2000) + " b", "x" + strings.Repeat("日本", 1000)} {
		for rest := s; len(rest) > maxPiece; {
			cut := split(rest)
			if cut <= 0 || cut > maxPiece || !utf8.ValidString(rest[:cut]) {
				t.Fatalf("split cut %d of %q...", cut, rest[:20])
			}
			rest = rest[cut:]
		}
	}
}

func FuzzCount(f *testing.F) {
	f.Add("hello world")
	f.Add(strings.Repeat("ab ", 500) + strings.Repeat("z", 3000))
	c, err := New(CL100K)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := c.Count(s)
		if n < 0 || (len(s) > 0 && n == 0) || n > int64(len(s)) {
			t.Errorf("Count(%d bytes) = %d", len(s), n)
		}
	})
}

func BenchmarkCount(b *testing.B) {
	prose := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 23)[:1024]
	blob := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 30)[:1024]
	for _, enc := range []string{O200K, CL100K, Bytes4} {
		c, err := New(enc)
		if err != nil {
			b.Fatal(err)
		}
		for name, text := range map[string]string{"prose": prose, "base64": blob} {
			b.Run(enc+"/"+name+"/KiB", func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				for b.Loop() {
					c.Count(text)
				}
			})
		}
	}
}
