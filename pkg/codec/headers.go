package codec

import "strconv"

// Headers is an HTTP header block in HAProxy's binary form: what the sample
// fetches req.hdrs_bin and res.hdrs_bin return, and what an agent receives
// as a BINARY argument from a spoe-message such as
//
//	spoe-message check-request
//	    args headers=req.hdrs_bin
//
// HAProxy's configuration manual defines the block as a list of header names
// and values, each a length-prefixed string whose length is an SPOP varint,
// ended by an empty name and an empty value:
//
//	*(<str:header-name><str:header-value>) <empty string><empty string>
//
// HAProxy sends every header line as its own pair, in the order of the
// request: a repeated header appears once per line, names are in lower case
// (HAProxy lower-cases them when it parses a request), and values are as
// HAProxy stores them, without the surrounding spaces.
//
// A Headers aliases the bytes it was made from; the names and values it
// returns are sub-slices of them. Its methods never allocate on a
// well-formed block and never panic. A malformed block is reported by
// [Headers.Validate] and by [HeaderIter.Err] as a [*HeadersError], which
// matches [ErrBadHeaders] with errors.Is.
type Headers []byte

// ErrBadHeaders is matched (errors.Is) by every error about a malformed
// header block; errors.As gives the [*HeadersError] with the details. It is
// not a protocol error of the connection (HAProxy never sends a malformed
// block): a handler decides what to do with it.
var ErrBadHeaders = &Error{StatusInvalid, "malformed header block"}

// HeadersError describes a malformed header block.
type HeadersError struct {
	// Offset is the byte offset, in the block, of the element that is
	// wrong: the length of a name or value, or the first byte after the end
	// marker.
	Offset int
	// Reason says, for a human, what is wrong.
	Reason string
	// Err is the underlying codec error: ErrTruncated, ErrVarintOverflow or
	// ErrTrailingData, or nil when only the block's structure is wrong.
	Err error
}

// Error implements the error interface.
func (e *HeadersError) Error() string {
	return "spop: malformed header block at byte " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

// Unwrap returns ErrBadHeaders and, when there is one, the underlying error.
func (e *HeadersError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrBadHeaders}
	}
	return []error{ErrBadHeaders, e.Err}
}

// HeaderIter iterates over the header pairs of a block, in order, in the
// style of bufio.Scanner:
//
//	it := h.Iter()
//	for it.Next() {
//		use(it.Name(), it.Value())
//	}
//	if err := it.Err(); err != nil { ... }
//
// The end marker is not a pair. A HeaderIter is a small value meant to live
// on the stack: iterating allocates nothing.
type HeaderIter struct {
	block       []byte
	off         int // where the next pair starts
	name, value []byte
	err         error
	done        bool
}

// Iter returns an iterator over the block's header pairs.
func (h Headers) Iter() HeaderIter { return HeaderIter{block: h} }

// Next advances to the next header pair and reports whether there is one.
// It returns false at the end marker, and on a malformed block (see Err).
func (it *HeaderIter) Next() bool {
	if it.done {
		return false
	}
	name, n, err := it.str(it.off, "name")
	if err != nil {
		return it.stop(err)
	}
	value, m, err := it.str(it.off+n, "value")
	if err != nil {
		if len(name) == 0 && it.off+n == len(it.block) {
			err = &HeadersError{Offset: it.off + n, Reason: "the block ends inside its end marker (an empty name without its empty value)", Err: ErrTruncated}
		}
		return it.stop(err)
	}
	if len(name) == 0 {
		switch {
		case len(value) != 0:
			return it.stop(&HeadersError{Offset: it.off, Reason: "empty header name with a non-empty value"})
		case it.off+n+m != len(it.block):
			return it.stop(&HeadersError{Offset: it.off + n + m, Reason: bytesText(len(it.block)-it.off-n-m) + " after the end marker", Err: ErrTrailingData})
		}
		it.off += n + m
		return it.stop(nil)
	}
	it.off += n + m
	it.name, it.value = name, value
	return true
}

// str parses the length-prefixed string at offset start of the block; what
// ("name" or "value") names it in errors. It returns the string and the
// number of bytes it takes.
func (it *HeaderIter) str(start int, what string) ([]byte, int, error) {
	if start == len(it.block) {
		if what == "name" {
			return nil, 0, &HeadersError{Offset: start, Reason: "the block ends without its end marker (an empty name and value)", Err: ErrTruncated}
		}
		return nil, 0, &HeadersError{Offset: start, Reason: "the block ends after a header name, without its value", Err: ErrTruncated}
	}
	s, n, err := ParseBytes(it.block[start:])
	switch {
	case err == ErrVarintOverflow:
		return nil, 0, &HeadersError{Offset: start, Reason: "the length of a header " + what + " overflows 64 bits", Err: err}
	case err != nil:
		l, ln, lerr := ParseVarint(it.block[start:])
		if lerr != nil {
			return nil, 0, &HeadersError{Offset: start, Reason: "the block ends inside the length of a header " + what, Err: err}
		}
		return nil, 0, &HeadersError{Offset: start, Reason: "a header " + what + " of " + strconv.FormatUint(l, 10) +
			" bytes runs past the end of the block (" + bytesText(len(it.block)-start-ln) + " left)", Err: err}
	}
	return s, n, nil
}

// stop ends the iteration with err (nil at the end marker).
func (it *HeaderIter) stop(err error) bool {
	it.done, it.err = true, err
	it.name, it.value = nil, nil
	return false
}

// Name returns the current header's name, as HAProxy sent it (in lower
// case). It aliases the block.
func (it *HeaderIter) Name() []byte { return it.name }

// Value returns the current header's value. It aliases the block, and may
// be empty.
func (it *HeaderIter) Value() []byte { return it.value }

// NameIs reports whether the current header's name is name, ignoring ASCII
// case ("Authorization" matches "authorization").
func (it *HeaderIter) NameIs(name string) bool { return equalFoldASCII(it.name, name) }

// Err returns nil once the iteration has reached the end marker, or while
// it is running, and the *HeadersError that stopped it otherwise.
func (it *HeaderIter) Err() error { return it.err }

// Get returns the value of the first header called name, ignoring ASCII
// case, without copying: the slice aliases the block. ok is false when no
// header has that name before the end of the block, or before a
// malformation (use Validate to tell a malformed block from a missing
// header). A header that HAProxy received on several lines is several
// pairs; iterate with Iter to see each of them.
func (h Headers) Get(name string) (value []byte, ok bool) {
	it := h.Iter()
	for it.Next() {
		if it.NameIs(name) {
			return it.value, true
		}
	}
	return nil, false
}

// Has reports whether a header called name is present (ignoring ASCII
// case).
func (h Headers) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Count returns the number of headers called name (ignoring ASCII case) and,
// when name is "", the number of all the header pairs. It counts the pairs
// before a malformation.
func (h Headers) Count(name string) int {
	n := 0
	it := h.Iter()
	for it.Next() {
		if name == "" || it.NameIs(name) {
			n++
		}
	}
	return n
}

// Validate checks the whole block: well-formed lengths, every string within
// the block, an end marker, and nothing after it. It returns nil or a
// *HeadersError.
func (h Headers) Validate() error {
	it := h.Iter()
	for it.Next() {
	}
	return it.Err()
}

// AppendHeaderPair appends one header pair to a block being built; finish the
// block with AppendHeadersEnd. An empty name would end the block early, and
// is the caller's to avoid.
func AppendHeaderPair(dst []byte, name, value string) []byte {
	return AppendString(AppendString(dst, name), value)
}

// AppendHeadersEnd appends the end marker of a header block: an empty name
// and an empty value.
func AppendHeadersEnd(dst []byte) []byte { return append(dst, 0, 0) }

// bytesText returns "1 byte" or "n bytes".
func bytesText(n int) string {
	if n == 1 {
		return "1 byte"
	}
	return strconv.Itoa(n) + " bytes"
}

// equalFoldASCII reports whether b and s are equal ignoring the case of
// ASCII letters; other bytes must be equal.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
