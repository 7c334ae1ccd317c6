package codec_test

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// TestValueEncode checks the constructors against hand-written typed data
// (spop.md §4).
func TestValueEncode(t *testing.T) {
	cases := []struct {
		name string
		v    codec.Value
		typ  codec.Type
		want string
	}{
		{"zero Value is NULL", codec.Value{}, codec.TypeNull, "00"},
		{"Null", codec.Null(), codec.TypeNull, "00"},
		{"Bool true is 11", codec.Bool(true), codec.TypeBool, "11"},
		{"Bool false is 01", codec.Bool(false), codec.TypeBool, "01"},
		{"Int32 42", codec.Int32(42), codec.TypeInt32, "02 2a"},
		{"Int32 -7 is 64-bit two's complement", codec.Int32(-7), codec.TypeInt32, "02 f9 f0 fe fe fe fe fe fe fe 0e"},
		{"Int32 -1", codec.Int32(-1), codec.TypeInt32, "02 ff f0 fe fe fe fe fe fe fe 0e"},
		{"Int32 min", codec.Int32(math.MinInt32), codec.TypeInt32, "02 f0 f1 fe fe be fe fe fe fe 0e"},
		{"Uint32 4e9", codec.Uint32(4_000_000_000), codec.TypeUint32, "03 f0 f1 e3 99 76"},
		{"Uint32 max", codec.Uint32(math.MaxUint32), codec.TypeUint32, "03 ff f0 fe fe 7e"},
		{"Int64 5", codec.Int64(5), codec.TypeInt64, "04 05"},
		{"Int64 -5 as HAProxy sends it", codec.Int64(-5), codec.TypeInt64, "04 fb f0 fe fe fe fe fe fe fe 0e"},
		{"Int64 -1234567890123", codec.Int64(-1234567890123), codec.TypeInt64, "04 f5 a4 9e 80 c6 df fc fe fe 0e"},
		{"Int64 max", codec.Int64(math.MaxInt64), codec.TypeInt64, "04 ff f0 fe fe fe fe fe fe fe 06"},
		{"Uint64 1234567890123456789", codec.Uint64(1234567890123456789), codec.TypeUint64, "05 f5 82 af f9 bd f3 a0 87 88 00"},
		{"Uint64 2^63+5", codec.Uint64(1<<63 + 5), codec.TypeUint64, "05 f5 f1 fe fe fe fe fe fe fe 06"},
		{"Addr IPv4", codec.Addr(netip.MustParseAddr("192.0.2.33")), codec.TypeIPv4, "06 c0 00 02 21"},
		{"Addr IPv4-mapped IPv6 is IPV4", codec.Addr(netip.MustParseAddr("::ffff:192.0.2.33")), codec.TypeIPv4, "06 c0 00 02 21"},
		{"Addr IPv6", codec.Addr(netip.MustParseAddr("2001:db8::42")), codec.TypeIPv6, "07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 42"},
		{"Addr IPv6 with zone", codec.Addr(netip.MustParseAddr("fe80::1%eth0")), codec.TypeIPv6, "07 fe 80 00 00 00 00 00 00 00 00 00 00 00 00 00 01"},
		{"Addr invalid is NULL", codec.Addr(netip.Addr{}), codec.TypeNull, "00"},
		{"String", codec.String("abc"), codec.TypeString, `08 03 "abc"`},
		{"String empty", codec.String(""), codec.TypeString, "08 00"},
		{"StringBytes", codec.StringBytes([]byte("abc")), codec.TypeString, `08 03 "abc"`},
		{"StringBytes nil", codec.StringBytes(nil), codec.TypeString, "08 00"},
		{"Binary", codec.Binary([]byte{0, 1, 0xfe, 0xff}), codec.TypeBinary, "09 04 00 01 fe ff"},
		{"Binary nil", codec.Binary(nil), codec.TypeBinary, "09 00"},
		{"BinaryString", codec.BinaryString("\x00\xff"), codec.TypeBinary, "09 02 00 ff"},
		{"String of 240 bytes", codec.String(string(bytes.Repeat([]byte("x"), 240))), codec.TypeString, "08 f0 00" + repeatHex("78", 240)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := hx(tc.want)
			require.Equal(t, tc.typ, tc.v.Type())
			require.Equal(t, want, codec.AppendValue(nil, tc.v))
			require.Equal(t, cat([]byte("pre"), want), codec.AppendValue([]byte("pre"), tc.v))
			require.Equal(t, len(want), codec.ValueLen(tc.v))

			// Decoding gives the same value back.
			got, n, err := codec.ParseValue(want)
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			require.True(t, tc.v.Equal(got), "decoded %v equals built", got.Type())
			require.True(t, got.Equal(tc.v))
			require.Equal(t, want, codec.AppendValue(nil, got))
		})
	}
}

// TestParseValue covers the type byte rules of spop.md §4.1.
func TestParseValue(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want codec.Value
		n    int
		err  error
	}{
		{"NULL", "00 ff", codec.Null(), 1, nil},
		{"NULL with flags", "f0", codec.Null(), 1, nil},
		{"BOOL 01 false", "01", codec.Bool(false), 1, nil},
		{"BOOL 11 true", "11", codec.Bool(true), 1, nil},
		{"BOOL 21 false", "21", codec.Bool(false), 1, nil},
		{"BOOL 31 false", "31", codec.Bool(false), 1, nil},
		{"BOOL f1 false", "f1", codec.Bool(false), 1, nil},
		{"INT32", "02 2a", codec.Int32(42), 2, nil},
		{"UINT32", "03 fc f0 06", codec.Uint32(16380), 4, nil},
		{"INT64 small", "04 05", codec.Int64(5), 2, nil},
		{"INT64 negative 10 bytes", "04 fb f0 fe fe fe fe fe fe fe 0e", codec.Int64(-5), 11, nil},
		{"INT64 with flags", "14 05", codec.Int64(5), 2, nil},
		{"UINT64", "05 ff f0 fe fe fe fe fe fe fe 0e", codec.Uint64(math.MaxUint64), 11, nil},
		{"IPV4", "06 7f 00 00 01 aa", codec.Addr(netip.MustParseAddr("127.0.0.1")), 5, nil},
		{"IPV6", "07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01", codec.Addr(netip.MustParseAddr("2001:db8::1")), 17, nil},
		{"empty STRING 08 00", "08 00", codec.String(""), 2, nil},
		{"empty BINARY 09 00", "09 00", codec.Binary(nil), 2, nil},
		{"STRING", `08 02 "/x"`, codec.String("/x"), 4, nil},
		{"STRING 18 is BINARY", `18 02 "/x"`, codec.Binary([]byte("/x")), 4, nil},
		{"STRING 28 is BINARY", `28 02 "/x"`, codec.Binary([]byte("/x")), 4, nil},
		{"STRING f8 is BINARY", `f8 00`, codec.Binary(nil), 2, nil},
		{"BINARY with flags", `19 01 "z"`, codec.Binary([]byte("z")), 3, nil},
		{"empty input", "", codec.Value{}, 0, codec.ErrTruncated},
		{"INT64 without varint", "04", codec.Value{}, 0, codec.ErrTruncated},
		{"INT64 varint cut", "04 f0", codec.Value{}, 0, codec.ErrTruncated},
		{"INT64 varint overflows", "04 ff f0 fe fe fe fe fe fe fe 0f", codec.Value{}, 0, codec.ErrVarintOverflow},
		{"IPV4 cut", "06 7f 00 00", codec.Value{}, 0, codec.ErrTruncated},
		{"IPV6 cut", "07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00", codec.Value{}, 0, codec.ErrTruncated},
		{"STRING without length", "08", codec.Value{}, 0, codec.ErrTruncated},
		{"STRING length past the end", `08 05 "abcd"`, codec.Value{}, 0, codec.ErrTruncated},
		{"BINARY length past the end", `09 f0 00 "abcd"`, codec.Value{}, 0, codec.ErrTruncated},
	}
	for id := 10; id <= 15; id++ {
		for _, flags := range []byte{0, 1, 0xf} {
			cases = append(cases, struct {
				name string
				in   string
				want codec.Value
				n    int
				err  error
			}{fmt.Sprintf("type id %d flags %x", id, flags), fmt.Sprintf("%02x 00 00 00 00", flags<<4|byte(id)), codec.Value{}, 0, codec.ErrUnknownDataType})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, n, err := codec.ParseValue(hx(tc.in))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				requireStatus(t, err, codec.StatusInvalid)
				require.Zero(t, n)
				require.True(t, v.IsNull())
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.n, n)
			require.Equal(t, tc.want.Type(), v.Type())
			require.True(t, tc.want.Equal(v), "value")
		})
	}
}

// TestValueAccessors calls every accessor on every kind of value, built and
// decoded: none panics, and ok is true exactly for the matching types.
func TestValueAccessors(t *testing.T) {
	type kind struct {
		name string
		v    codec.Value
	}
	var kinds []kind
	kinds = append(kinds, kind{"zero", codec.Value{}})
	for _, ty := range everyType {
		kinds = append(kinds, kind{ty.name, ty.v})
		dec, _, err := codec.ParseValue(codec.AppendValue(nil, ty.v))
		require.NoError(t, err)
		kinds = append(kinds, kind{"decoded " + ty.name, dec})
	}
	kinds = append(kinds,
		kind{"StringBytes", codec.StringBytes([]byte("sb"))},
		kind{"BinaryString", codec.BinaryString("bs")},
		kind{"String empty", codec.String("")},
		kind{"Binary nil", codec.Binary(nil)},
	)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			v := k.v
			ty := v.Type()
			require.NotPanics(t, func() {
				b, ok := v.Bool()
				require.Equal(t, ty == codec.TypeBool, ok)
				if !ok {
					require.False(t, b)
				}
				i, ok := v.Int()
				require.Equal(t, ty.IsInt(), ok)
				u, ok2 := v.Uint()
				require.Equal(t, ok, ok2)
				require.Equal(t, uint64(i), u)
				if !ok {
					// The wrong type gives the zero value, never the
					// internal representation (an address, a bool).
					require.Zero(t, i)
					require.Zero(t, u)
				}
				a, ok := v.Addr()
				require.Equal(t, ty == codec.TypeIPv4 || ty == codec.TypeIPv6, ok)
				require.Equal(t, ok, a.IsValid())
				if ok {
					require.Equal(t, ty == codec.TypeIPv4, a.Is4())
				}
				bs, ok := v.Bytes()
				require.Equal(t, ty == codec.TypeString || ty == codec.TypeBinary, ok)
				s, ok2 := v.String()
				require.Equal(t, ok, ok2)
				require.Equal(t, string(bs), s)
				if !ok {
					require.Nil(t, bs)
					require.Empty(t, s)
				}
				require.Equal(t, ty == codec.TypeNull, v.IsNull())
				require.True(t, v.Equal(v))
			})
		})
	}
	t.Run("Int of UINT64 at or above 2^63 is negative, as in HAProxy", func(t *testing.T) {
		i, ok := codec.Uint64(1<<63 + 5).Int()
		require.True(t, ok)
		require.Equal(t, int64(-9223372036854775803), i)
	})
	t.Run("Uint of a negative Int32 is its 64-bit pattern", func(t *testing.T) {
		u, ok := codec.Int32(-7).Uint()
		require.True(t, ok)
		require.Equal(t, uint64(math.MaxUint64-6), u)
	})
	t.Run("decoded values", func(t *testing.T) {
		in := hx(`06 0a 00 00 01 07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 08 03 "abc"`)
		v4, n, err := codec.ParseValue(in)
		require.NoError(t, err)
		a, ok := v4.Addr()
		require.True(t, ok)
		require.Equal(t, netip.MustParseAddr("10.0.0.1"), a)
		v6, m, err := codec.ParseValue(in[n:])
		require.NoError(t, err)
		a, ok = v6.Addr()
		require.True(t, ok)
		require.Equal(t, netip.MustParseAddr("2001:db8::1"), a)
		sv, _, err := codec.ParseValue(in[n+m:])
		require.NoError(t, err)
		// Bytes aliases the input; String copies.
		b, ok := sv.Bytes()
		require.True(t, ok)
		s, ok := sv.String()
		require.True(t, ok)
		in[len(in)-1] = 'C'
		require.Equal(t, "abC", string(b))
		require.Equal(t, "abc", s)
	})
}

func TestValueEqual(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	dec := func(v codec.Value) codec.Value {
		d, _, err := codec.ParseValue(codec.AppendValue(nil, v))
		require.NoError(t, err)
		return d
	}
	cases := []struct {
		name string
		a, b codec.Value
		want bool
	}{
		{"null", codec.Null(), codec.Value{}, true},
		{"bools", codec.Bool(true), codec.Bool(true), true},
		{"bools differ", codec.Bool(true), codec.Bool(false), false},
		{"int32 vs int64", codec.Int32(1), codec.Int64(1), false},
		{"int64", codec.Int64(-1), dec(codec.Int64(-1)), true},
		{"ipv4 built and decoded", codec.Addr(ip), dec(codec.Addr(ip)), true},
		{"ipv4 differ", codec.Addr(ip), codec.Addr(ip.Next()), false},
		{"ipv6 built and decoded", codec.Addr(netip.IPv6Loopback()), dec(codec.Addr(netip.IPv6Loopback())), true},
		{"string built three ways", codec.String("ab"), codec.StringBytes([]byte("ab")), true},
		{"string decoded", codec.String("ab"), dec(codec.String("ab")), true},
		{"string vs binary", codec.String("ab"), codec.Binary([]byte("ab")), false},
		{"binary built two ways", codec.BinaryString("ab"), codec.Binary([]byte("ab")), true},
		{"strings differ", codec.String("ab"), codec.String("ac"), false},
		{"strings differ in length", codec.String("ab"), codec.String("abc"), false},
		{"empty strings", codec.String(""), dec(codec.String("")), true},
		{"null vs bool false", codec.Null(), codec.Bool(false), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.a.Equal(tc.b))
			require.Equal(t, tc.want, tc.b.Equal(tc.a))
		})
	}
}

func TestTypeString(t *testing.T) {
	want := []string{"null", "bool", "int32", "uint32", "int64", "uint64", "ipv4", "ipv6", "string", "binary"}
	for i, w := range want {
		ty := codec.Type(i)
		t.Run(w, func(t *testing.T) {
			require.Equal(t, w, ty.String())
			require.Equal(t, ty >= codec.TypeInt32 && ty <= codec.TypeUint64, ty.IsInt())
		})
	}
	for _, ty := range []codec.Type{10, 15, 255} {
		t.Run(fmt.Sprint(uint8(ty)), func(t *testing.T) {
			require.Equal(t, fmt.Sprintf("type(%d)", ty), ty.String())
			require.False(t, ty.IsInt())
		})
	}
}
