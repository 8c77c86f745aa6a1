// Package tokens counts the tokens of text the way models read it, for
// token budgets (quotas[].result_tokens). The encodings o200k_base and
// cl100k_base are embedded in the binary (tiktoken-go with its offline
// loader): nothing is downloaded, ever. bytes4 is the cheap estimate of
// one token per four bytes.
//
// An encoding is loaded by the first New that asks for it (a few hundred
// milliseconds and some tens of MB), when the gateway builds a quota that
// counts tokens: a gateway whose quotas count none never loads one.
//
// Text is encoded in pieces cut at white space within 1 KiB, and runs
// without white space every 128 bytes: byte-pair encoding is quadratic in
// a piece's length, and results come from servers, so a megabyte of
// base64 must not cost seconds. A count may then exceed the model's by a
// token per cut.
package tokens
