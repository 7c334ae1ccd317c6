package codec_test

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// varintCases are the boundaries of spop.md §3.2 (both ends of every length)
// and the worked examples of §3.3, with their encodings written by hand.
var varintCases = []struct {
	name string
	v    uint64
	enc  string
}{
	// §3.2: both ends of each length.
	{"1-byte min 0", 0, "00"},
	{"1-byte max 239", 239, "ef"},
	{"2-byte min 240", 240, "f0 00"},
	{"2-byte max 2287", 2287, "ff 7f"},
	{"3-byte min 2288", 2288, "f0 80 00"},
	{"3-byte max 264431", 264431, "ff ff 7f"},
	{"4-byte min 264432", 264432, "f0 80 80 00"},
	{"4-byte max 33818863", 33818863, "ff ff ff 7f"},
	{"5-byte min 33818864", 33818864, "f0 80 80 80 00"},
	{"5-byte max 4328786159", 4328786159, "ff ff ff ff 7f"},
	{"6-byte min 4328786160", 4328786160, "f0 80 80 80 80 00"},
	{"6-byte max 554084600047", 554084600047, "ff ff ff ff ff 7f"},
	{"7-byte min 554084600048", 554084600048, "f0 80 80 80 80 80 00"},
	{"7-byte max 70922828777711", 70922828777711, "ff ff ff ff ff ff 7f"},
	{"8-byte min 70922828777712", 70922828777712, "f0 80 80 80 80 80 80 00"},
	{"8-byte max 9078122083518703", 9078122083518703, "ff ff ff ff ff ff ff 7f"},
	{"9-byte min 9078122083518704", 9078122083518704, "f0 80 80 80 80 80 80 80 00"},
	{"9-byte max 1161999626690365679", 1161999626690365679, "ff ff ff ff ff ff ff ff 7f"},
	{"10-byte min 1161999626690365680", 1161999626690365680, "f0 80 80 80 80 80 80 80 80 00"},
	{"10-byte max 2^64-1", math.MaxUint64, "ff f0 fe fe fe fe fe fe fe 0e"},
	// §3.3 worked examples.
	{"127", 127, "7f"},
	{"128 is one byte", 128, "80"},
	{"241", 241, "f1 00"},
	{"255", 255, "ff 00"},
	{"256", 256, "f0 01"},
	{"404", 404, "f4 0a"},
	{"1000", 1000, "f8 2f"},
	{"8080", 8080, "f0 ea 02"},
	{"16380 default max-frame-size", 16380, "fc f0 06"},
	{"23480", 23480, "f8 ac 0a"},
	{"65532", 65532, "fc f0 1e"},
	{"300000", 300000, "f0 af 91 00"},
	{"2^32-1", math.MaxUint32, "ff f0 fe fe 7e"},
	{"2^63-1", math.MaxInt64, "ff f0 fe fe fe fe fe fe fe 06"},
	{"2^63", 1 << 63, "f0 f1 fe fe fe fe fe fe fe 06"},
	{"-1 as int64", uint64(1<<64 - 1), "ff f0 fe fe fe fe fe fe fe 0e"},
	{"-5 as int64", negU64(5), "fb f0 fe fe fe fe fe fe fe 0e"},
	{"-42 as int64", negU64(42), "f6 ee fe fe fe fe fe fe fe 0e"},
	{"-7 as int32 (two's complement 64)", negU64(7), "f9 f0 fe fe fe fe fe fe fe 0e"},
}

// negU64 returns the 64-bit two's complement of -n.
func negU64(n uint64) uint64 { return -n }

func TestVarintEncodeDecode(t *testing.T) {
	for _, tc := range varintCases {
		t.Run(tc.name, func(t *testing.T) {
			enc := hx(tc.enc)
			require.Equal(t, enc, codec.AppendVarint(nil, tc.v), "encode")
			require.Equal(t, len(enc), codec.VarintLen(tc.v))
			require.LessOrEqual(t, len(enc), codec.MaxVarintLen)

			v, n, err := codec.ParseVarint(enc)
			require.NoError(t, err)
			require.Equal(t, tc.v, v, "decode")
			require.Equal(t, len(enc), n)

			// Trailing bytes are not consumed.
			v, n, err = codec.ParseVarint(cat(enc, hx("ff 00 7f")))
			require.NoError(t, err)
			require.Equal(t, tc.v, v)
			require.Equal(t, len(enc), n)

			// Appending keeps what dst held.
			require.Equal(t, cat([]byte("ab"), enc), codec.AppendVarint([]byte("ab"), tc.v))
		})
	}
}

// TestVarintLengthRanges checks that each length's range ends exactly where
// spop.md §3.2 says: the value just outside each end needs another length.
func TestVarintLengthRanges(t *testing.T) {
	ranges := []struct {
		n        int
		min, max uint64
	}{
		{1, 0, 239},
		{2, 240, 2287},
		{3, 2288, 264431},
		{4, 264432, 33818863},
		{5, 33818864, 4328786159},
		{6, 4328786160, 554084600047},
		{7, 554084600048, 70922828777711},
		{8, 70922828777712, 9078122083518703},
		{9, 9078122083518704, 1161999626690365679},
		{10, 1161999626690365680, math.MaxUint64},
	}
	for _, r := range ranges {
		t.Run(fmt.Sprintf("%d-byte", r.n), func(t *testing.T) {
			for _, v := range []uint64{r.min, r.min + 1, r.max - 1, r.max} {
				enc := codec.AppendVarint(nil, v)
				require.Len(t, enc, r.n, "value %d", v)
				require.Equal(t, r.n, codec.VarintLen(v))
				got, n, err := codec.ParseVarint(enc)
				require.NoError(t, err)
				require.Equal(t, v, got)
				require.Equal(t, r.n, n)
			}
			if r.min > 0 {
				require.Equal(t, r.n-1, codec.VarintLen(r.min-1))
			}
			if r.max < math.MaxUint64 {
				require.Equal(t, r.n+1, codec.VarintLen(r.max+1))
			}
		})
	}
}

// TestVarintRoundTripAll round-trips every value from 0 to 3,000,000 and
// checks that encodings of consecutive values differ (the encoding is
// injective over that range).
func TestVarintRoundTripAll(t *testing.T) {
	buf := make([]byte, 0, codec.MaxVarintLen)
	var prev []byte
	for v := uint64(0); v <= 3_000_000; v++ {
		buf = codec.AppendVarint(buf[:0], v)
		if len(buf) != codec.VarintLen(v) {
			t.Fatalf("VarintLen(%d) = %d, encoding has %d bytes", v, codec.VarintLen(v), len(buf))
		}
		got, n, err := codec.ParseVarint(buf)
		if err != nil || got != v || n != len(buf) {
			t.Fatalf("ParseVarint(% x) = %d, %d, %v; want %d, %d, nil", buf, got, n, err, v, len(buf))
		}
		if bytes.Equal(prev, buf) {
			t.Fatalf("%d and %d share the encoding % x", v-1, v, buf)
		}
		prev = append(prev[:0], buf...)
	}
}

// TestVarintTruncated: every strict prefix of every multi-byte encoding is
// ErrTruncated, never a value.
func TestVarintTruncated(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		for _, b := range [][]byte{nil, {}} {
			v, n, err := codec.ParseVarint(b)
			require.ErrorIs(t, err, codec.ErrTruncated)
			requireStatus(t, err, codec.StatusInvalid)
			require.Zero(t, v)
			require.Zero(t, n)
		}
	})
	t.Run("f0", func(t *testing.T) {
		_, _, err := codec.ParseVarint(hx("f0"))
		require.ErrorIs(t, err, codec.ErrTruncated)
	})
	t.Run("f0 80", func(t *testing.T) {
		_, _, err := codec.ParseVarint(hx("f0 80"))
		require.ErrorIs(t, err, codec.ErrTruncated)
	})
	for _, tc := range varintCases {
		enc := hx(tc.enc)
		if len(enc) == 1 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(enc) {
				v, n, err := codec.ParseVarint(enc[:i])
				require.ErrorIs(t, err, codec.ErrTruncated, "prefix of %d bytes", i)
				require.Zero(t, v)
				require.Zero(t, n)
			}
		})
	}
}

func TestVarintOverflow(t *testing.T) {
	cases := []struct {
		name string
		in   string
	}{
		{"2^64 (spop.md example)", "ff f0 fe fe fe fe fe fe fe 0f"},
		{"smallest 10-byte with last byte 0f", "f0 80 80 80 80 80 80 80 80 0f"},
		{"10th byte 10", "f0 80 80 80 80 80 80 80 80 10"},
		{"10th byte 7f", "f0 80 80 80 80 80 80 80 80 7f"},
		{"10th byte continues", "f0 80 80 80 80 80 80 80 80 80"},
		{"11 bytes", "f0 80 80 80 80 80 80 80 80 80 00"},
		{"11 bytes of ff then 00", "ff ff ff ff ff ff ff ff ff ff 00"},
		{"12 bytes", "ff ff ff ff ff ff ff ff ff ff ff 00"},
		{"2^64-1 plus one in the second byte", "ff f1 fe fe fe fe fe fe fe 0e"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, n, err := codec.ParseVarint(hx(tc.in))
			require.ErrorIs(t, err, codec.ErrVarintOverflow)
			requireStatus(t, err, codec.StatusInvalid)
			require.Zero(t, v)
			require.Zero(t, n)
			// The reference agrees that these are not uint64 values.
			_, _, ok := refVarint(hx(tc.in))
			require.False(t, ok)
		})
	}
}

// refVarint is an independent reading of spop.md §3.1 with arbitrary
// precision: add every byte shifted by 0, 4, 11, 18, ... bits up to the
// first byte below 128 (or the first byte if it is below 240). It reports
// ok = false for truncated input, for more than 10 bytes and for values
// above 2^64-1.
func refVarint(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0] < 240 {
		return uint64(b[0]), 1, true
	}
	sum := big.NewInt(int64(b[0]))
	shift := uint(4)
	for i := 1; i < len(b); i++ {
		if i >= codec.MaxVarintLen {
			return 0, 0, false
		}
		sum.Add(sum, new(big.Int).Lsh(big.NewInt(int64(b[i])), shift))
		shift += 7
		if b[i] < 128 {
			if !sum.IsUint64() {
				return 0, 0, false
			}
			return sum.Uint64(), i + 1, true
		}
	}
	return 0, 0, false
}

// TestVarintAgainstReference compares ParseVarint with the big-number
// reference on every 2-byte sequence and on structured longer ones.
func TestVarintAgainstReference(t *testing.T) {
	check := func(b []byte) {
		t.Helper()
		want, wn, ok := refVarint(b)
		got, n, err := codec.ParseVarint(b)
		if ok {
			if err != nil || got != want || n != wn {
				t.Fatalf("ParseVarint(% x) = %d, %d, %v; reference %d, %d", b, got, n, err, want, wn)
			}
			return
		}
		if err == nil {
			t.Fatalf("ParseVarint(% x) = %d, %d; reference says invalid", b, got, n)
		}
		requireCodecError(t, err)
	}
	for i := range 1 << 16 {
		check([]byte{byte(i >> 8), byte(i)})
	}
	// Ten-byte sequences around the top of the range.
	for _, first := range []byte{0xf0, 0xf7, 0xff} {
		for _, mid := range []byte{0x80, 0xf0, 0xfe, 0xff} {
			for last := range 0x80 {
				b := []byte{first, mid, mid, mid, mid, mid, mid, mid, mid, byte(last)}
				check(b)
				b[1] = 0xf0
				check(b)
			}
		}
	}
}

func TestParseBytes(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string
		n    int
		err  error
	}{
		{"empty string", "00", "", 1, nil},
		{"three bytes", `03 "abc"`, "abc", 4, nil},
		{"trailing bytes ignored", `03 "abc" ff`, "abc", 4, nil},
		{"240 bytes", "f0 00" + repeatHex("61", 240), string(bytes.Repeat([]byte("a"), 240)), 242, nil},
		{"empty input", "", "", 0, codec.ErrTruncated},
		{"length truncated", "f0", "", 0, codec.ErrTruncated},
		{"length past the end", `04 "abc"`, "", 0, codec.ErrTruncated},
		{"huge length", "ff f0 fe fe fe fe fe fe fe 0e", "", 0, codec.ErrTruncated},
		{"length overflows", "ff f0 fe fe fe fe fe fe fe 0f", "", 0, codec.ErrVarintOverflow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, n, err := codec.ParseBytes(hx(tc.in))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.Nil(t, s)
				require.Zero(t, n)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, string(s))
			require.Equal(t, tc.n, n)
		})
	}
	t.Run("result cannot overwrite what follows", func(t *testing.T) {
		in := hx(`03 "abc" "xyz"`)
		s, _, err := codec.ParseBytes(in)
		require.NoError(t, err)
		_ = append(s, '!')
		require.Equal(t, hx(`03 "abc" "xyz"`), in)
	})
	t.Run("AppendBytes and AppendString", func(t *testing.T) {
		require.Equal(t, hx(`03 "abc"`), codec.AppendBytes(nil, []byte("abc")))
		require.Equal(t, hx(`03 "abc"`), codec.AppendString(nil, "abc"))
		require.Equal(t, hx("00"), codec.AppendString(nil, ""))
		long := bytes.Repeat([]byte("z"), 300)
		enc := codec.AppendBytes([]byte{1}, long)
		require.Equal(t, cat([]byte{1}, codec.AppendVarint(nil, 300), long), enc)
		s, n, err := codec.ParseBytes(enc[1:])
		require.NoError(t, err)
		require.Equal(t, long, s)
		require.Equal(t, len(enc)-1, n)
	})
}

func repeatHex(h string, n int) string {
	var b bytes.Buffer
	for range n {
		b.WriteString(h)
		b.WriteByte(' ')
	}
	return b.String()
}
