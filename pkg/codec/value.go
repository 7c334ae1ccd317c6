package codec

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Type is the type id of a typed value: the low nibble of its type byte.
type Type uint8

// The SPOP data types. HAProxy sends only Null, Bool, Int64, IPv4, IPv6,
// String and Binary in NOTIFY frames; the other integer types appear in
// HELLO and DISCONNECT items and may be used in ACKs.
const (
	TypeNull   Type = 0
	TypeBool   Type = 1
	TypeInt32  Type = 2
	TypeUint32 Type = 3
	TypeInt64  Type = 4
	TypeUint64 Type = 5
	TypeIPv4   Type = 6
	TypeIPv6   Type = 7
	TypeString Type = 8
	TypeBinary Type = 9
)

var typeNames = [...]string{"null", "bool", "int32", "uint32", "int64", "uint64", "ipv4", "ipv6", "string", "binary"}

// String returns the type's name as the SPOP documentation spells it in
// lower case ("null", "int64", "ipv6", ...).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// IsInt reports whether t is one of the four integer types.
func (t Type) IsInt() bool { return t >= TypeInt32 && t <= TypeUint64 }

// Value is one typed SPOP value. The zero Value is NULL.
//
// A decoded Value aliases the frame it came from: Bytes returns a slice of
// that frame, valid only as long as the frame is. String always copies.
// Accessors never panic; they report with their second result whether the
// value has a type they can return.
type Value struct {
	typ Type
	num uint64 // integers (their 64-bit pattern), bool (0 or 1), the high half of a built IP
	lo  uint64 // the low half of a built IPv6 address
	raw []byte // decoded string, binary, ipv4 (4 bytes) or ipv6 (16 bytes)
	str string // string or binary built from a Go string
}

// Null returns the NULL value. In an ACK, setting a variable to NULL unsets it.
func Null() Value { return Value{} }

// Bool returns a BOOL value.
func Bool(b bool) Value {
	if b {
		return Value{typ: TypeBool, num: 1}
	}
	return Value{typ: TypeBool}
}

// Int32 returns an INT32 value. Negative numbers are sent as 64-bit two's
// complement, which is how HAProxy reads them back as negative.
func Int32(v int32) Value { return Value{typ: TypeInt32, num: uint64(int64(v))} }

// Uint32 returns a UINT32 value.
func Uint32(v uint32) Value { return Value{typ: TypeUint32, num: uint64(v)} }

// Int64 returns an INT64 value, the type HAProxy uses for every integer it
// sends.
func Int64(v int64) Value { return Value{typ: TypeInt64, num: uint64(v)} }

// Uint64 returns a UINT64 value. HAProxy stores integers as int64, so values
// of 2^63 and above become negative there.
func Uint64(v uint64) Value { return Value{typ: TypeUint64, num: v} }

// Addr returns an IPV4 value for an IPv4 (or IPv4-mapped IPv6) address and an
// IPV6 value otherwise. The invalid netip.Addr gives NULL.
func Addr(a netip.Addr) Value {
	switch {
	case !a.IsValid():
		return Value{}
	case a.Is4() || a.Is4In6():
		b := a.Unmap().As4()
		return Value{typ: TypeIPv4, num: uint64(binary.BigEndian.Uint32(b[:]))}
	default:
		b := a.As16()
		return Value{typ: TypeIPv6, num: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
	}
}

// String returns a STRING value holding s.
func String(s string) Value { return Value{typ: TypeString, str: s} }

// StringBytes returns a STRING value holding b. The Value aliases b.
func StringBytes(b []byte) Value { return Value{typ: TypeString, raw: b} }

// Binary returns a BINARY value holding b. The Value aliases b.
func Binary(b []byte) Value { return Value{typ: TypeBinary, raw: b} }

// BinaryString returns a BINARY value holding the bytes of s.
func BinaryString(s string) Value { return Value{typ: TypeBinary, str: s} }

// Type returns the value's type.
func (v Value) Type() Type { return v.typ }

// IsNull reports whether v is NULL.
func (v Value) IsNull() bool { return v.typ == TypeNull }

// Bool returns the value of a BOOL; for any other type it returns false,
// false.
func (v Value) Bool() (b, ok bool) {
	if v.typ != TypeBool {
		return false, false
	}
	return v.num != 0, true
}

// Int returns the value of any integer type as an int64, the way HAProxy
// reads it (UINT64 values of 2^63 and above come out negative); for any
// other type it returns 0, false.
func (v Value) Int() (int64, bool) {
	if !v.typ.IsInt() {
		return 0, false
	}
	return int64(v.num), true
}

// Uint returns the raw 64-bit pattern of any integer type; for any other
// type it returns 0, false.
func (v Value) Uint() (uint64, bool) {
	if !v.typ.IsInt() {
		return 0, false
	}
	return v.num, true
}

// Addr returns the address of an IPV4 or IPV6 value.
func (v Value) Addr() (netip.Addr, bool) {
	switch v.typ {
	case TypeIPv4:
		var a [4]byte
		if v.raw == nil {
			binary.BigEndian.PutUint32(a[:], uint32(v.num))
		} else if copy(a[:], v.raw) != 4 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4(a), true
	case TypeIPv6:
		var a [16]byte
		if v.raw == nil {
			binary.BigEndian.PutUint64(a[:8], v.num)
			binary.BigEndian.PutUint64(a[8:], v.lo)
		} else if copy(a[:], v.raw) != 16 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(a), true
	}
	return netip.Addr{}, false
}

// Bytes returns the data of a STRING or BINARY value. For a decoded value
// the slice aliases the frame: copy it to keep it past the frame's lifetime.
func (v Value) Bytes() ([]byte, bool) {
	if v.typ != TypeString && v.typ != TypeBinary {
		return nil, false
	}
	if v.raw == nil && v.str != "" {
		return []byte(v.str), true
	}
	return v.raw, true
}

// String returns the data of a STRING or BINARY value as a new string, safe
// to keep.
func (v Value) String() (string, bool) {
	if v.typ != TypeString && v.typ != TypeBinary {
		return "", false
	}
	if v.raw == nil {
		return v.str, true
	}
	return string(v.raw), true
}

// Equal reports whether v and w have the same type and data.
func (v Value) Equal(w Value) bool {
	if v.typ != w.typ {
		return false
	}
	switch v.typ {
	case TypeIPv4, TypeIPv6:
		a, _ := v.Addr()
		b, _ := w.Addr()
		return a == b
	case TypeString, TypeBinary:
	default:
		return v.num == w.num
	}
	if v.dataLen() != w.dataLen() {
		return false
	}
	if v.raw != nil && w.raw != nil {
		return string(v.raw) == string(w.raw)
	}
	return v.data() == w.data()
}

func (v Value) dataLen() int {
	if v.raw != nil {
		return len(v.raw)
	}
	return len(v.str)
}

// data returns the value's bytes as a string; it allocates only for values
// built from a []byte, and is used off the hot path.
func (v Value) data() string {
	if v.raw != nil {
		return string(v.raw)
	}
	return v.str
}

// ParseValue decodes the typed value at the start of b and returns it with
// the number of bytes it used. The value aliases b.
//
// The type is the low nibble of the type byte and its flags the high nibble.
// A BOOL is true only when the flags are exactly 1, as in HAProxy. A STRING
// with flag bits set is read as BINARY, again as HAProxy does. Type ids 10 to
// 15 fail with ErrUnknownDataType: their length is unknown, so they cannot be
// skipped.
func ParseValue(b []byte) (Value, int, error) {
	var v Value
	n, err := parseValueInto(&v, b)
	return v, n, err
}

// parseValueInto is ParseValue writing into *v, which it overwrites whole
// (or leaves as it was, on error). A Value is eight words: returned with an
// int and an error it goes through memory, and copying it from there into
// a slice element stalls on store forwarding; decoders write in place.
func parseValueInto(v *Value, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, ErrTruncated
	}
	tb := b[0]
	t, flags := Type(tb&0x0F), tb>>4
	switch t {
	case TypeNull:
		*v = Value{}
		return 1, nil
	case TypeBool:
		var num uint64
		if flags == 1 {
			num = 1
		}
		*v = Value{typ: TypeBool, num: num}
		return 1, nil
	case TypeInt32, TypeUint32, TypeInt64, TypeUint64:
		n, l, err := ParseVarint(b[1:])
		if err != nil {
			return 0, err
		}
		*v = Value{typ: t, num: n}
		return 1 + l, nil
	case TypeIPv4:
		if len(b) < 5 {
			return 0, ErrTruncated
		}
		*v = Value{typ: t, raw: b[1:5:5]}
		return 5, nil
	case TypeIPv6:
		if len(b) < 17 {
			return 0, ErrTruncated
		}
		*v = Value{typ: t, raw: b[1:17:17]}
		return 17, nil
	case TypeString, TypeBinary:
		s, l, err := ParseBytes(b[1:])
		if err != nil {
			return 0, err
		}
		if flags != 0 {
			t = TypeBinary
		}
		*v = Value{typ: t, raw: s}
		return 1 + l, nil
	}
	return 0, ErrUnknownDataType
}

// AppendValue appends v as typed data. A BOOL true is the type byte 0x11.
func AppendValue(dst []byte, v Value) []byte {
	switch v.typ {
	case TypeBool:
		if v.num != 0 {
			return append(dst, 0x11)
		}
		return append(dst, byte(TypeBool))
	case TypeInt32, TypeUint32, TypeInt64, TypeUint64:
		return AppendVarint(append(dst, byte(v.typ)), v.num)
	case TypeIPv4:
		dst = append(dst, byte(v.typ))
		if v.raw != nil {
			return append(dst, v.raw...)
		}
		return binary.BigEndian.AppendUint32(dst, uint32(v.num))
	case TypeIPv6:
		dst = append(dst, byte(v.typ))
		if v.raw != nil {
			return append(dst, v.raw...)
		}
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(dst, v.num), v.lo)
	case TypeString, TypeBinary:
		dst = append(dst, byte(v.typ))
		if v.raw != nil {
			return AppendBytes(dst, v.raw)
		}
		return AppendString(dst, v.str)
	}
	return append(dst, byte(TypeNull))
}

// ValueLen returns the number of bytes AppendValue uses for v.
func ValueLen(v Value) int {
	switch v.typ {
	case TypeInt32, TypeUint32, TypeInt64, TypeUint64:
		return 1 + VarintLen(v.num)
	case TypeIPv4:
		return 5
	case TypeIPv6:
		return 17
	case TypeString, TypeBinary:
		n := v.dataLen()
		return 1 + VarintLen(uint64(n)) + n
	}
	return 1
}
