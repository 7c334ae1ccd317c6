package codec_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// hdrsDir holds the header blocks captured from HAProxy (see its README).
const hdrsDir = "../../testdata/hdrsbin"

// hpair is one decoded header.
type hpair struct{ name, value string }

// block builds a well-formed header block from name, value pairs.
func block(kv ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(kv); i += 2 {
		b = codec.AppendHeaderPair(b, kv[i], kv[i+1])
	}
	return codec.AppendHeadersEnd(b)
}

// pairs iterates over h and returns its pairs and the iterator's error.
func pairs(h codec.Headers) ([]hpair, error) {
	out := []hpair{}
	it := h.Iter()
	for it.Next() {
		out = append(out, hpair{string(it.Name()), string(it.Value())})
	}
	return out, it.Err()
}

func TestHeaders_WellFormed(t *testing.T) {
	long240 := strings.Repeat("v", 240)
	long5000 := strings.Repeat("w", 5000)
	tests := []struct {
		name string
		in   []byte
		want []hpair
	}{
		{"only the end marker", hx("00 00"), []hpair{}},
		{"one header", hx(`04 "host" 0c "example.test" 00 00`), []hpair{{"host", "example.test"}}},
		{"empty value", hx(`07 "x-empty" 00 01 "a" 01 "b" 00 00`), []hpair{{"x-empty", ""}, {"a", "b"}}},
		{"repeated header", block("cookie", "a=1", "x", "y", "cookie", "b=2"), []hpair{{"cookie", "a=1"}, {"x", "y"}, {"cookie", "b=2"}}},
		{"non-ASCII bytes", block("x-bytes", "\x00\x80\xff caf\xc3\xa9"), []hpair{{"x-bytes", "\x00\x80\xff caf\xc3\xa9"}}},
		{"two-byte length", cat(hx(`01 "l" f0 00`), []byte(long240), hx("00 00")), []hpair{{"l", long240}}},
		{"three-byte length", block("l", long5000), []hpair{{"l", long5000}}},
		{"mixed-case name kept as sent", block("X-MiXeD", "V"), []hpair{{"X-MiXeD", "V"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := codec.Headers(tt.in)
			require.NoError(t, h.Validate())
			got, err := pairs(h)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, len(tt.want), h.Count(""))
			for _, p := range tt.want {
				v, ok := h.Get(p.name)
				require.True(t, ok)
				require.Equal(t, firstValue(tt.want, p.name), string(v))
				require.True(t, h.Has(strings.ToUpper(p.name)))
			}
			_, ok := h.Get("x-absent")
			require.False(t, ok)
			require.False(t, h.Has(""), "the end marker is not a header")
		})
	}
}

func firstValue(ps []hpair, name string) string {
	for _, p := range ps {
		if strings.EqualFold(p.name, name) {
			return p.value
		}
	}
	return ""
}

func TestHeaders_Lookup(t *testing.T) {
	h := codec.Headers(block(
		"host", "example.test",
		"authorization", "Bearer abc",
		"x-forwarded-for", "192.0.2.1",
		"x-forwarded-for", "198.51.100.2",
		"x-empty", "",
		"x-\xe9", "latin-1 name",
	))
	tests := []struct {
		name  string
		want  string
		ok    bool
		count int
	}{
		{"authorization", "Bearer abc", true, 1},
		{"Authorization", "Bearer abc", true, 1},
		{"AUTHORIZATION", "Bearer abc", true, 1},
		{"x-forwarded-for", "192.0.2.1", true, 2},
		{"X-Forwarded-For", "192.0.2.1", true, 2},
		{"x-empty", "", true, 1},
		{"x-\xe9", "latin-1 name", true, 1},
		{"x-\xc9", "", false, 0}, // non-ASCII bytes are compared exactly
		{"authorizatio", "", false, 0},
		{"authorizationn", "", false, 0},
		{"host ", "", false, 0},
		{"", "", false, 0},
		{"authoriza\x14ion", "", false, 0}, // 'T'^0x40: only letters fold
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := h.Get(tt.name)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, string(v))
			require.Equal(t, tt.ok, h.Has(tt.name))
			if tt.name != "" {
				require.Equal(t, tt.count, h.Count(tt.name))
			}
		})
	}
	require.Equal(t, 6, h.Count(""))

	var seen []string
	it := h.Iter()
	for it.Next() {
		if it.NameIs("X-FORWARDED-FOR") {
			seen = append(seen, string(it.Value()))
		}
	}
	require.NoError(t, it.Err())
	require.Equal(t, []string{"192.0.2.1", "198.51.100.2"}, seen)
	require.False(t, it.Next(), "an iterator stays done")
	require.Nil(t, it.Name())
	require.Nil(t, it.Value())
}

func TestHeaders_Malformed(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		offset int
		reason string
		cause  error // nil: structure only
		before []hpair
	}{
		{"empty block", nil, 0, "the block ends without its end marker", codec.ErrTruncated, nil},
		{"no end marker", hx(`01 "a" 01 "b"`), 4, "the block ends without its end marker", codec.ErrTruncated, []hpair{{"a", "b"}}},
		{"half an end marker", hx(`01 "a" 01 "b" 00`), 5, "the block ends inside its end marker", codec.ErrTruncated, []hpair{{"a", "b"}}},
		{"name without value", hx(`01 "a"`), 2, "the block ends after a header name", codec.ErrTruncated, nil},
		{"name past the end", hx(`05 "ab"`), 0, "a header name of 5 bytes runs past the end of the block (2 bytes left)", codec.ErrTruncated, nil},
		{"value past the end", hx(`01 "a" 09 "xyz"`), 2, "a header value of 9 bytes runs past the end of the block (3 bytes left)", codec.ErrTruncated, nil},
		{"length cut inside its varint", hx(`01 "a" f5`), 2, "the block ends inside the length of a header value", codec.ErrTruncated, nil},
		{"name length overflows", hx(`ff ff ff ff ff ff ff ff ff ff ff`), 0, "the length of a header name overflows 64 bits", codec.ErrVarintOverflow, nil},
		{"huge name length", cat(hx("ff ff ff ff ff ff ff ff 7f"), []byte("abc")), 0, "runs past the end of the block", codec.ErrTruncated, nil},
		{"empty name with a value", hx(`01 "a" 01 "b" 00 03 "xyz" 00 00`), 4, "empty header name with a non-empty value", nil, []hpair{{"a", "b"}}},
		{"bytes after the end marker", hx(`01 "a" 01 "b" 00 00 01 "c" 01 "d"`), 6, "4 bytes after the end marker", codec.ErrTrailingData, []hpair{{"a", "b"}}},
		{"a second end marker", hx(`00 00 00 00`), 2, "2 bytes after the end marker", codec.ErrTrailingData, []hpair{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := codec.Headers(tt.in)
			err := h.Validate()
			require.Error(t, err)
			require.ErrorIs(t, err, codec.ErrBadHeaders)
			var he *codec.HeadersError
			require.ErrorAs(t, err, &he)
			require.Equal(t, tt.offset, he.Offset, "offset; error %v", err)
			require.Contains(t, he.Reason, tt.reason)
			require.Contains(t, err.Error(), "malformed header block at byte ")
			if tt.cause != nil {
				require.ErrorIs(t, err, tt.cause)
				require.Equal(t, tt.cause, he.Err)
			} else {
				require.Nil(t, he.Err)
				require.False(t, errors.Is(err, codec.ErrTruncated))
			}
			require.Equal(t, codec.StatusInvalid, codec.StatusOf(err))

			got, ierr := pairs(h)
			require.Equal(t, err.Error(), ierr.Error(), "Iter stops with Validate's error")
			if tt.before == nil {
				tt.before = []hpair{}
			}
			require.Equal(t, tt.before, got, "the pairs before the malformation")
			_, ok := h.Get("missing")
			require.False(t, ok)
		})
	}
}

// hdrsManifest is testdata/hdrsbin/manifest.json.
type hdrsManifest struct {
	Blocks []struct {
		File    string `json:"file"`
		Branch  string `json:"haproxy_branch"`
		Case    string `json:"case"`
		Fetch   string `json:"fetch"`
		Length  int    `json:"length"`
		Headers []struct {
			Name     string `json:"name"`
			Value    string `json:"value"`
			ValueHex string `json:"value_hex"`
		} `json:"headers"`
	} `json:"blocks"`
}

func loadHdrsManifest(t testing.TB) hdrsManifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(hdrsDir, "manifest.json"))
	require.NoError(t, err)
	var m hdrsManifest
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func loadHdrsBlock(t testing.TB, file string) []byte {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(hdrsDir, file))
	require.NoError(t, err)
	b, err := hex.DecodeString(strings.TrimSpace(string(text)))
	require.NoError(t, err, file)
	return b
}

// TestHeaders_HAProxyCaptures decodes every block captured from HAProxy
// 2.6, 3.0 and 3.2 and compares it with the manifest, and checks a few
// facts by hand: repeated headers, empty values, the folded line,
// non-ASCII bytes and the block without headers.
func TestHeaders_HAProxyCaptures(t *testing.T) {
	m := loadHdrsManifest(t)
	require.Len(t, m.Blocks, 72, "9 cases x request and response x 4 branches")
	branches := map[string]int{}
	for _, e := range m.Blocks {
		t.Run(e.File, func(t *testing.T) {
			branches[e.Branch]++
			b := loadHdrsBlock(t, e.File)
			require.Len(t, b, e.Length)
			h := codec.Headers(b)
			require.NoError(t, h.Validate())
			got, err := pairs(h)
			require.NoError(t, err)
			want := []hpair{}
			for _, p := range e.Headers {
				v := p.Value
				if p.ValueHex != "" {
					raw, err := hex.DecodeString(p.ValueHex)
					require.NoError(t, err)
					v = string(raw)
				}
				want = append(want, hpair{p.Name, v})
			}
			require.Equal(t, want, got)
			for _, p := range got {
				require.Equal(t, strings.ToLower(p.name), p.name, "HAProxy sends names in lower case")
			}
		})
	}
	require.Equal(t, map[string]int{"2.6": 18, "3.0": 18, "3.2": 18, "3.4": 18}, branches)

	for _, branch := range []string{"2.6", "3.0", "3.2", "3.4"} {
		t.Run("by hand/"+branch, func(t *testing.T) {
			rep := codec.Headers(loadHdrsBlock(t, branch+"/repeated-req.hex"))
			require.Equal(t, 2, rep.Count("X-Forwarded-For"))
			require.Equal(t, 2, rep.Count("cookie"))
			v, ok := rep.Get("x-forwarded-for")
			require.True(t, ok)
			require.Equal(t, "192.0.2.1", string(v), "the first line")

			empty := codec.Headers(loadHdrsBlock(t, branch+"/empty-values-req.hex"))
			v, ok = empty.Get("X-Empty")
			require.True(t, ok)
			require.Empty(t, v)
			v, _ = empty.Get("x-padded")
			require.Equal(t, "v a l", string(v))

			folded := codec.Headers(loadHdrsBlock(t, branch+"/folded-req.hex"))
			v, _ = folded.Get("x-folded")
			require.Equal(t, "first    second  \tthird", string(v))

			nonASCII := codec.Headers(loadHdrsBlock(t, branch+"/non-ascii-req.hex"))
			v, _ = nonASCII.Get("x-latin1")
			require.Equal(t, []byte{0xe9, 't', 0xe9}, v)

			auth := codec.Headers(loadHdrsBlock(t, branch+"/mixed-case-req.hex"))
			v, _ = auth.Get("Authorization")
			require.Equal(t, "Bearer abc.def.ghi", string(v))

			none := loadHdrsBlock(t, branch+"/http10-no-headers-req.hex")
			require.Equal(t, []byte{0, 0}, none)
			require.Zero(t, codec.Headers(none).Count(""))

			long := codec.Headers(loadHdrsBlock(t, branch+"/long-values-req.hex"))
			v, _ = long.Get("x-long-5000")
			require.Len(t, v, 5000)
		})
	}
}

// TestHeaders_Encode: AppendHeaderPair and AppendHeadersEnd write the bytes
// HAProxy writes.
func TestHeaders_Encode(t *testing.T) {
	b := codec.AppendHeaderPair(nil, "host", "example.test")
	b = codec.AppendHeaderPair(b, "user-agent", "curl/8.5.0")
	b = codec.AppendHeaderPair(b, "accept", "*/*")
	b = codec.AppendHeadersEnd(b)
	require.Equal(t, loadHdrsBlock(t, "3.2/basic-req.hex"), b)
}

// FuzzHeaders: on any input, Validate and the iterator agree and never
// panic; an error is a *codec.HeadersError (and a *codec.Error) with an
// offset inside the block; a valid block re-encodes to the same bytes with
// AppendHeaderPair and AppendHeadersEnd; and Get finds the first pair of
// each name. Seeds: the blocks captured from HAProxy and the malformed
// blocks of the unit tests.
func FuzzHeaders(f *testing.F) {
	m := loadHdrsManifest(f)
	for _, e := range m.Blocks {
		f.Add(loadHdrsBlock(f, e.File))
	}
	for _, s := range []string{"", "00", "00 00", "00 00 00 00", `01 "a" 01 "b"`, `01 "a" 01 "b" 00`, `05 "ab"`,
		`01 "a" f5`, "ff ff ff ff ff ff ff ff ff ff ff", `01 "a" 01 "b" 00 03 "xyz" 00 00`, `01 "a" f0 00`} {
		f.Add(hx(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h := codec.Headers(b)
		err := h.Validate()
		got, ierr := pairs(h)
		if (err == nil) != (ierr == nil) || (err != nil && err.Error() != ierr.Error()) {
			t.Fatalf("Validate: %v; iterator: %v", err, ierr)
		}
		if err != nil {
			mustCodecError(t, err)
			var he *codec.HeadersError
			if !errors.As(err, &he) || !errors.Is(err, codec.ErrBadHeaders) {
				t.Fatalf("%v (%T) is not a *HeadersError matching ErrBadHeaders", err, err)
			}
			if he.Offset < 0 || he.Offset > len(b) {
				t.Fatalf("offset %d outside the %d-byte block", he.Offset, len(b))
			}
			return
		}
		var enc []byte
		for _, p := range got {
			if p.name == "" {
				t.Fatalf("a pair with an empty name: %q", got)
			}
			enc = codec.AppendHeaderPair(enc, p.name, p.value)
		}
		enc = codec.AppendHeadersEnd(enc)
		if string(enc) != string(b) {
			t.Fatalf("re-encoded % x, want % x", enc, b)
		}
		if h.Count("") != len(got) {
			t.Fatalf("Count(\"\") = %d, want %d", h.Count(""), len(got))
		}
		for _, p := range got {
			upper := asciiCase(p.name, 'a', 'z', 0xe0) // 'A'-'a' modulo 256
			v, ok := h.Get(upper)
			if want := firstASCIIFold(got, p.name); !ok || string(v) != want {
				t.Fatalf("Get(%q) = %q, %v; want %q", upper, v, ok, want)
			}
		}
	})
}

// firstASCIIFold returns the value of the first pair whose name equals
// name, ignoring the case of ASCII letters only.
func firstASCIIFold(ps []hpair, name string) string {
	for _, p := range ps {
		if asciiCase(p.name, 'A', 'Z', 'a'-'A') == asciiCase(name, 'A', 'Z', 'a'-'A') {
			return p.value
		}
	}
	return ""
}

// asciiCase adds delta to the bytes of s within lo..hi, leaving the others
// (and invalid UTF-8) alone.
func asciiCase(s string, lo, hi, delta byte) string {
	b := []byte(s)
	for i, c := range b {
		if lo <= c && c <= hi {
			b[i] = c + delta
		}
	}
	return string(b)
}
