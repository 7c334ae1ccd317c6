package codec

import "math/bits"

// MaxVarintLen is the longest SPOP varint: 10 bytes hold any uint64.
const MaxVarintLen = 10

// ParseVarint decodes the SPOP varint at the start of b and returns its value
// and the number of bytes it used.
//
// SPOP's varint is not LEB128: a first byte below 240 is the value itself;
// otherwise the first byte's full value is added to every following byte
// shifted left by 4, 11, 18, ... bits, up to and including the first byte
// below 128. It fails with ErrTruncated when b ends before the last byte and
// with ErrVarintOverflow when the value exceeds 2^64-1 or needs an 11th byte.
func ParseVarint(b []byte) (v uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	v = uint64(b[0])
	if v < 240 {
		return v, 1, nil
	}
	shift := uint(4)
	for i := 1; ; i++ {
		if i >= len(b) {
			return 0, 0, ErrTruncated
		}
		if i == MaxVarintLen {
			return 0, 0, ErrVarintOverflow
		}
		c := uint64(b[i])
		if c > (^uint64(0))>>shift {
			return 0, 0, ErrVarintOverflow
		}
		var carry uint64
		v, carry = bits.Add64(v, c<<shift, 0)
		if carry != 0 {
			return 0, 0, ErrVarintOverflow
		}
		if c < 128 {
			return v, i + 1, nil
		}
		shift += 7
	}
}

// AppendVarint appends v in SPOP's varint encoding.
func AppendVarint(dst []byte, v uint64) []byte {
	if v < 240 {
		return append(dst, byte(v))
	}
	dst = append(dst, byte(v)|0xF0)
	for v = (v - 240) >> 4; v >= 128; v = (v - 128) >> 7 {
		dst = append(dst, byte(v)|0x80)
	}
	return append(dst, byte(v))
}

// VarintLen returns the number of bytes AppendVarint uses for v.
func VarintLen(v uint64) int {
	if v < 240 {
		return 1
	}
	n := 2
	for v = (v - 240) >> 4; v >= 128; v = (v - 128) >> 7 {
		n++
	}
	return n
}

// ParseBytes decodes an untyped, length-prefixed byte string (a message,
// argument, item or variable name, or the data of a STRING or BINARY value)
// at the start of b. The returned slice aliases b.
func ParseBytes(b []byte) (s []byte, n int, err error) {
	l, n, err := ParseVarint(b)
	if err != nil {
		return nil, 0, err
	}
	if l > uint64(len(b)-n) {
		return nil, 0, ErrTruncated
	}
	end := n + int(l)
	return b[n:end:end], end, nil
}

// AppendBytes appends s as an untyped, length-prefixed byte string.
func AppendBytes(dst, s []byte) []byte {
	return append(AppendVarint(dst, uint64(len(s))), s...)
}

// AppendString appends s as an untyped, length-prefixed byte string.
func AppendString(dst []byte, s string) []byte {
	return append(AppendVarint(dst, uint64(len(s))), s...)
}
