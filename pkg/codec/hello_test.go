package codec_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// everyType has one value of each of the 10 SPOP data types.
var everyType = []struct {
	name string
	v    codec.Value
}{
	{"null", codec.Null()},
	{"bool", codec.Bool(true)},
	{"int32", codec.Int32(-7)},
	{"uint32", codec.Uint32(4_000_000_000)},
	{"int64", codec.Int64(-1234567890123)},
	{"uint64", codec.Uint64(1<<63 + 5)},
	{"ipv4", codec.Addr(netip.MustParseAddr("192.0.2.33"))},
	{"ipv6", codec.Addr(netip.MustParseAddr("2001:db8::42"))},
	{"string", codec.String("2.0")},
	{"binary", codec.Binary([]byte{0, 1, 0xfe, 0xff})},
}

// Items of a typical HAPROXY-HELLO (2.6.12).
var (
	itemVersions = kvItem{"supported-versions", codec.String("2.0")}
	itemMFS      = kvItem{"max-frame-size", codec.Uint32(16380)}
	itemCaps     = kvItem{"capabilities", codec.String("pipelining,async")}
	itemEngine   = kvItem{"engine-id", codec.String("05df61fb-bd80-475e-89b5-a5b656c332c3")}
	itemCheck    = kvItem{"healthcheck", codec.Bool(true)}
)

func decodeHAProxyHello(t *testing.T, payload []byte) (codec.HAProxyHello, error) {
	t.Helper()
	var h codec.HAProxyHello
	err := h.Decode(payload)
	return h, err
}

func TestHAProxyHelloSupportedVersions(t *testing.T) {
	cases := []struct {
		name    string
		item    *kvItem // nil: missing
		decErr  error
		wantErr error
	}{
		{"2.0", &kvItem{"supported-versions", codec.String("2.0")}, nil, nil},
		{"spaces around 2.0", &kvItem{"supported-versions", codec.String(" 2.0 ")}, nil, nil},
		{"2.0,3.0", &kvItem{"supported-versions", codec.String("2.0,3.0")}, nil, nil},
		{"3.0, 2.0", &kvItem{"supported-versions", codec.String("3.0, 2.0")}, nil, nil},
		{"tab-separated", &kvItem{"supported-versions", codec.String("\t3.0\t,\t2.0\t")}, nil, nil},
		{"2.1 has major 2", &kvItem{"supported-versions", codec.String("2.1")}, nil, nil},
		{"2.00", &kvItem{"supported-versions", codec.String("2.00")}, nil, nil},
		{"as BINARY", &kvItem{"supported-versions", codec.Binary([]byte("2.0"))}, nil, nil},
		{"3.0", &kvItem{"supported-versions", codec.String("3.0")}, nil, codec.ErrUnsupportedVersion},
		{"1.0", &kvItem{"supported-versions", codec.String("1.0")}, nil, codec.ErrUnsupportedVersion},
		{"empty", &kvItem{"supported-versions", codec.String("")}, nil, codec.ErrUnsupportedVersion},
		{"2 without minor", &kvItem{"supported-versions", codec.String("2")}, nil, codec.ErrUnsupportedVersion},
		{"2. without minor", &kvItem{"supported-versions", codec.String("2.")}, nil, codec.ErrUnsupportedVersion},
		{"20.0", &kvItem{"supported-versions", codec.String("20.0")}, nil, codec.ErrUnsupportedVersion},
		{"2.0.1", &kvItem{"supported-versions", codec.String("2.0.1")}, nil, codec.ErrUnsupportedVersion},
		{"2.x", &kvItem{"supported-versions", codec.String("2.x")}, nil, codec.ErrUnsupportedVersion},
		{"commas only", &kvItem{"supported-versions", codec.String(",,")}, nil, codec.ErrUnsupportedVersion},
		{"missing", nil, nil, codec.ErrNoSupportedVersions},
		{"of type INT32", &kvItem{"supported-versions", codec.Int32(2)}, codec.ErrBadKVType, nil},
		{"of type NULL", &kvItem{"supported-versions", codec.Null()}, codec.ErrBadKVType, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items := []kvItem{itemMFS, itemCaps}
			if tc.item != nil {
				items = append([]kvItem{*tc.item}, items...)
			}
			h, err := decodeHAProxyHello(t, kvPayload(items...))
			if tc.decErr != nil {
				require.ErrorIs(t, err, tc.decErr)
				requireStatus(t, err, codec.StatusInvalid)
				return
			}
			require.NoError(t, err)
			if tc.item == nil {
				require.Nil(t, h.SupportedVersions)
			} else {
				s, _ := tc.item.v.String()
				require.Equal(t, s, string(h.SupportedVersions))
				require.Equal(t, tc.wantErr == nil, codec.SupportsVersion2(h.SupportedVersions))
			}
			err = h.Validate()
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			requireStatus(t, err, codec.StatusBadVersion) // 8, missing or not
		})
	}
}

func TestHAProxyHelloMaxFrameSize(t *testing.T) {
	cases := []struct {
		name    string
		v       *codec.Value // nil: missing
		decErr  error
		want    uint32
		wantErr error
		status  codec.Status
	}{
		{"missing", nil, nil, 0, codec.ErrNoFrameSize, codec.StatusNoFrameSize},
		{"0", ptr(codec.Uint32(0)), nil, 0, codec.ErrBadFrameSize, codec.StatusBadFrameSize},
		{"255", ptr(codec.Uint32(255)), nil, 255, codec.ErrBadFrameSize, codec.StatusBadFrameSize},
		{"256", ptr(codec.Uint32(256)), nil, 256, nil, 0},
		{"16380", ptr(codec.Uint32(16380)), nil, 16380, nil, 0},
		{"65532", ptr(codec.Uint32(65532)), nil, 65532, nil, 0},
		{"2^32-1", ptr(codec.Uint32(1<<32 - 1)), nil, 1<<32 - 1, nil, 0},
		{"as INT32", ptr(codec.Int32(16380)), nil, 16380, nil, 0},
		{"as UINT64", ptr(codec.Uint64(16380)), nil, 16380, nil, 0},
		{"as INT64", ptr(codec.Int64(65532)), nil, 65532, nil, 0},
		{"UINT64 above 2^32 saturates", ptr(codec.Uint64(1 << 40)), nil, 1<<32 - 1, nil, 0},
		{"as STRING", ptr(codec.String("16380")), codec.ErrBadKVType, 0, nil, codec.StatusInvalid},
		{"as BINARY", ptr(codec.Binary([]byte{0x3f, 0xfc})), codec.ErrBadKVType, 0, nil, codec.StatusInvalid},
		{"as BOOL", ptr(codec.Bool(true)), codec.ErrBadKVType, 0, nil, codec.StatusInvalid},
		{"as NULL", ptr(codec.Null()), codec.ErrBadKVType, 0, nil, codec.StatusInvalid},
		{"as IPV4", ptr(codec.Addr(netip.MustParseAddr("0.0.63.252"))), codec.ErrBadKVType, 0, nil, codec.StatusInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items := []kvItem{itemVersions, itemCaps}
			if tc.v != nil {
				items = append(items, kvItem{"max-frame-size", *tc.v})
			}
			h, err := decodeHAProxyHello(t, kvPayload(items...))
			if tc.decErr != nil {
				require.ErrorIs(t, err, tc.decErr)
				requireStatus(t, err, tc.status)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.v != nil, h.HasMaxFrameSize)
			require.Equal(t, tc.want, h.MaxFrameSize)
			err = h.Validate()
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			requireStatus(t, err, tc.status)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestHAProxyHelloCapabilities(t *testing.T) {
	const (
		p = codec.CapPipelining
		a = codec.CapAsync
		f = codec.CapFragmentation
	)
	cases := []struct {
		name string
		raw  *string // nil: missing
		want codec.Capabilities
	}{
		{"empty (health check)", ptr(""), 0},
		{"pipelining", ptr("pipelining"), p},
		{"pipelining,async", ptr("pipelining,async"), p | a},
		{"spaces around words", ptr(" pipelining , async "), p | a},
		{"tabs around words", ptr("\tpipelining\t,\tasync"), p | a},
		{"all three", ptr("pipelining,async,fragmentation"), p | a | f},
		{"order does not matter", ptr("fragmentation,pipelining"), p | f},
		{"unknown words skipped", ptr("foo,pipelining,bar baz,async,"), p | a},
		{"pipelining2 is not pipelining", ptr("pipelining2"), 0},
		{"xpipelining is not pipelining", ptr("xpipelining,async"), a},
		{"case matters", ptr("PIPELINING"), 0},
		{"empty words", ptr(",,pipelining,,"), p},
		{"repeated", ptr("async,async"), a},
		{"missing", nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items := []kvItem{itemVersions, itemMFS}
			if tc.raw != nil {
				items = append(items, kvItem{"capabilities", codec.String(*tc.raw)})
			}
			h, err := decodeHAProxyHello(t, kvPayload(items...))
			require.NoError(t, err)
			require.NoError(t, h.Validate(), "capabilities are never required")
			require.Equal(t, tc.want, h.Capabilities)
			if tc.raw == nil {
				require.Nil(t, h.RawCapabilities)
			} else {
				require.NotNil(t, h.RawCapabilities)
				require.Equal(t, *tc.raw, string(h.RawCapabilities))
				require.Equal(t, tc.want, codec.ParseCapabilities([]byte(*tc.raw)))
			}
		})
	}
	t.Run("of type INT64", func(t *testing.T) {
		_, err := decodeHAProxyHello(t, kvPayload(itemVersions, itemMFS, kvItem{"capabilities", codec.Int64(1)}))
		require.ErrorIs(t, err, codec.ErrBadKVType)
	})
}

func TestCapabilitiesString(t *testing.T) {
	cases := []struct {
		c    codec.Capabilities
		want string
	}{
		{0, ""},
		{codec.CapPipelining, "pipelining"},
		{codec.CapAsync, "async"},
		{codec.CapFragmentation, "fragmentation"},
		{codec.CapPipelining | codec.CapAsync, "pipelining,async"},
		{codec.CapAsync | codec.CapPipelining | codec.CapFragmentation, "pipelining,async,fragmentation"},
		{codec.CapFragmentation | codec.CapPipelining, "pipelining,fragmentation"},
		{0xf8, ""}, // bits with no name
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			require.Equal(t, tc.want, tc.c.String())
			require.Equal(t, tc.c&(codec.CapPipelining|codec.CapAsync|codec.CapFragmentation), codec.ParseCapabilities([]byte(tc.c.String())))
		})
	}
	t.Run("Has", func(t *testing.T) {
		c := codec.CapPipelining | codec.CapAsync
		require.True(t, c.Has(codec.CapPipelining))
		require.True(t, c.Has(codec.CapPipelining|codec.CapAsync))
		require.True(t, c.Has(0))
		require.False(t, c.Has(codec.CapFragmentation))
		require.False(t, c.Has(codec.CapPipelining|codec.CapFragmentation))
	})
}

func TestHAProxyHelloUnknownKeys(t *testing.T) {
	want := codec.HAProxyHello{
		SupportedVersions: []byte("2.0"),
		MaxFrameSize:      16380,
		HasMaxFrameSize:   true,
		Capabilities:      codec.CapPipelining | codec.CapAsync,
		RawCapabilities:   []byte("pipelining,async"),
	}
	for _, ty := range everyType {
		for pos := range 4 {
			t.Run(fmt.Sprintf("%s at %d", ty.name, pos), func(t *testing.T) {
				items := []kvItem{itemVersions, itemMFS, itemCaps}
				items = append(items[:pos:pos], append([]kvItem{{"x-unknown", ty.v}}, items[pos:]...)...)
				h, err := decodeHAProxyHello(t, kvPayload(items...))
				require.NoError(t, err)
				require.Equal(t, want, h)
			})
		}
	}
	// Type bytes with flag bits (BOOL 31, STRING 18/28, INT64 14, NULL f0)
	// are skipped too.
	for _, raw := range []string{"31", "21", `18 02 "ab"`, `28 00`, "14 f0 00", "f0", `f9 01 00`, "36 7f 00 00 01"} {
		t.Run("flagged "+raw, func(t *testing.T) {
			payload := cat(hx(`09 "x-unknown"`), hx(raw), kvPayload(itemVersions, itemMFS, itemCaps))
			h, err := decodeHAProxyHello(t, payload)
			require.NoError(t, err)
			require.Equal(t, want, h)
		})
	}
	// Keys that only start like a known key are unknown (HAProxy matches by
	// prefix; we match exactly, and HAProxy sends exact keys).
	t.Run("longer key names are unknown", func(t *testing.T) {
		h, err := decodeHAProxyHello(t, kvPayload(
			kvItem{"max-frame-size-x", codec.String("not a number")},
			kvItem{"supported-versionsX", codec.Int32(1)},
			itemVersions, itemMFS, itemCaps,
			kvItem{"capabilities ", codec.Null()},
			kvItem{"", codec.Null()},
		))
		require.NoError(t, err)
		require.Equal(t, want, h)
	})
	// A type id of 10 to 15 cannot be skipped: its length is unknown.
	for id := 10; id <= 15; id++ {
		t.Run(fmt.Sprintf("type id %d", id), func(t *testing.T) {
			payload := cat(kvPayload(itemVersions), hx(`09 "x-unknown"`), []byte{byte(id), 0}, kvPayload(itemMFS))
			_, err := decodeHAProxyHello(t, payload)
			require.ErrorIs(t, err, codec.ErrUnknownDataType)
			requireStatus(t, err, codec.StatusInvalid)
		})
	}
}

// permutations returns every ordering of items.
func permutations(items []kvItem) [][]kvItem {
	if len(items) <= 1 {
		return [][]kvItem{append([]kvItem(nil), items...)}
	}
	var out [][]kvItem
	for i := range items {
		rest := append(append([]kvItem(nil), items[:i]...), items[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]kvItem{items[i]}, p...))
		}
	}
	return out
}

func TestHAProxyHelloAnyOrder(t *testing.T) {
	want := codec.HAProxyHello{
		SupportedVersions: []byte("2.0"),
		MaxFrameSize:      16380,
		HasMaxFrameSize:   true,
		Capabilities:      codec.CapPipelining | codec.CapAsync,
		RawCapabilities:   []byte("pipelining,async"),
		EngineID:          []byte("05df61fb-bd80-475e-89b5-a5b656c332c3"),
		Healthcheck:       true,
	}
	perms := permutations([]kvItem{itemVersions, itemMFS, itemCaps, itemEngine, itemCheck})
	require.Len(t, perms, 120)
	for i, p := range perms {
		t.Run(fmt.Sprintf("order %d", i), func(t *testing.T) {
			h, err := decodeHAProxyHello(t, kvPayload(p...))
			require.NoError(t, err)
			require.Equal(t, want, h)
			require.NoError(t, h.Validate())
		})
	}
}

func TestHAProxyHelloEngineIDAndHealthcheck(t *testing.T) {
	cases := []struct {
		name      string
		extra     []kvItem
		engineID  []byte
		check     bool
		decodeErr error
	}{
		{"neither", nil, nil, false, nil},
		{"engine-id", []kvItem{itemEngine}, []byte("05df61fb-bd80-475e-89b5-a5b656c332c3"), false, nil},
		{"empty engine-id", []kvItem{{"engine-id", codec.String("")}}, []byte{}, false, nil},
		{"healthcheck true", []kvItem{itemCheck}, nil, true, nil},
		{"healthcheck false", []kvItem{{"healthcheck", codec.Bool(false)}}, nil, false, nil},
		{"both", []kvItem{itemEngine, itemCheck}, []byte("05df61fb-bd80-475e-89b5-a5b656c332c3"), true, nil},
		{"healthcheck as INT32", []kvItem{{"healthcheck", codec.Int32(1)}}, nil, false, codec.ErrBadKVType},
		{"engine-id as UINT32", []kvItem{{"engine-id", codec.Uint32(1)}}, nil, false, codec.ErrBadKVType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := decodeHAProxyHello(t, kvPayload(append([]kvItem{itemVersions, itemMFS, itemCaps}, tc.extra...)...))
			if tc.decodeErr != nil {
				require.ErrorIs(t, err, tc.decodeErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.engineID, h.EngineID)
			require.Equal(t, tc.check, h.Healthcheck)
			require.NoError(t, h.Validate(), "engine-id is never required")
		})
	}
	// A BOOL is true only when its flag nibble is exactly 1, as in HAProxy.
	for _, tc := range []struct {
		b    byte
		want bool
	}{{0x01, false}, {0x11, true}, {0x21, false}, {0x31, false}, {0xf1, false}} {
		t.Run(fmt.Sprintf("healthcheck type byte %02x", tc.b), func(t *testing.T) {
			payload := cat(kvPayload(itemVersions, itemMFS, itemCaps), hx(`0b "healthcheck"`), []byte{tc.b})
			h, err := decodeHAProxyHello(t, payload)
			require.NoError(t, err)
			require.Equal(t, tc.want, h.Healthcheck)
		})
	}
}

// itemEnds returns the offsets at which a KV-LIST payload may end: 0 and the
// end of each item.
func itemEnds(t *testing.T, payload []byte) map[int]bool {
	ends := map[int]bool{0: true}
	for off := 0; off < len(payload); {
		_, n, err := codec.NextKV(payload[off:])
		require.NoError(t, err)
		off += n
		ends[off] = true
	}
	return ends
}

// TestKVTruncatedEverywhere cuts HELLO and DISCONNECT payloads at every byte:
// inside a key, a length or a value it is an error; at an item boundary the
// shorter list decodes.
func TestKVTruncatedEverywhere(t *testing.T) {
	payloads := map[string][]byte{
		"haproxy hello":      kvPayload(itemVersions, itemMFS, itemCaps, itemEngine, itemCheck),
		"agent hello":        kvPayload(kvItem{"version", codec.String("2.0")}, kvItem{"max-frame-size", codec.Uint32(65532)}, kvItem{"capabilities", codec.String("pipelining")}),
		"disconnect":         kvPayload(kvItem{"status-code", codec.Uint32(10)}, kvItem{"message", codec.String("fragmentation not supported")}),
		"every type":         nil,
		"captured 2.6 hello": nil,
	}
	var all []kvItem
	for _, ty := range everyType {
		all = append(all, kvItem{"k-" + ty.name, ty.v})
	}
	payloads["every type"] = kvPayload(all...)
	f, err := codec.DecodeFrame(loadVector(t, "2.6/haproxy-hello.hex"), codec.MaxFrameLen)
	require.NoError(t, err)
	payloads["captured 2.6 hello"] = f.Payload

	for name, payload := range payloads {
		t.Run(name, func(t *testing.T) {
			ends := itemEnds(t, payload)
			for cut := 0; cut <= len(payload); cut++ {
				p := payload[:cut]
				var (
					hh  codec.HAProxyHello
					ah  codec.AgentHello
					dc  codec.Disconnect
					kvs []codec.KV
				)
				errs := []error{hh.Decode(p), ah.Decode(p), dc.Decode(p)}
				_, kerr := codec.ParseKVList(kvs, p)
				errs = append(errs, kerr)
				for i, err := range errs {
					if ends[cut] {
						require.NoError(t, err, "decoder %d, cut at item boundary %d", i, cut)
						continue
					}
					require.ErrorIs(t, err, codec.ErrTruncated, "decoder %d, cut at %d of %d", i, cut, len(payload))
					requireStatus(t, err, codec.StatusInvalid)
				}
			}
		})
	}
}

func TestAppendHAProxyHello(t *testing.T) {
	t.Run("health check of spop.md §2.3", func(t *testing.T) {
		want := hx(`00 00 00 4e 01 00 00 00 01 00 00
			12 "supported-versions" 08 03 "2.0"
			0e "max-frame-size" 03 fc f0 06
			0c "capabilities" 08 00
			0b "healthcheck" 11`)
		got := codec.AppendHAProxyHello(nil, &codec.HAProxyHello{MaxFrameSize: 16380, Healthcheck: true})
		require.Equal(t, want, got)
		require.Equal(t, loadVector(t, "3.2/haproxy-hello-healthcheck.hex"), got)
	})
	t.Run("capabilities from the set, engine-id", func(t *testing.T) {
		got := codec.AppendHAProxyHello([]byte{0xaa}, &codec.HAProxyHello{
			MaxFrameSize: 65532,
			Capabilities: codec.CapPipelining,
			EngineID:     []byte("e"),
		})
		body := hx(`01 00 00 00 01 00 00
			12 "supported-versions" 08 03 "2.0"
			0e "max-frame-size" 03 fc f0 1e
			0c "capabilities" 08 0a "pipelining"
			09 "engine-id" 08 01 "e"`)
		require.Equal(t, cat([]byte{0xaa}, prefix(uint32(len(body))), body), got)
		f, err := codec.DecodeFrame(got[1:], codec.MaxFrameLen)
		require.NoError(t, err)
		h, err := decodeHAProxyHello(t, f.Payload)
		require.NoError(t, err)
		require.Equal(t, codec.CapPipelining, h.Capabilities)
		require.Equal(t, uint32(65532), h.MaxFrameSize)
	})
}

func TestAgentHello(t *testing.T) {
	version := func(s string) kvItem { return kvItem{"version", codec.String(s)} }
	mfs := func(v codec.Value) kvItem { return kvItem{"max-frame-size", v} }
	caps := func(s string) kvItem { return kvItem{"capabilities", codec.String(s)} }
	const offer = 16380
	cases := []struct {
		name    string
		items   []kvItem
		decErr  error
		wantErr error
		status  codec.Status
	}{
		{"typical", []kvItem{version("2.0"), mfs(codec.Uint32(16380)), caps("pipelining")}, nil, nil, 0},
		{"any order", []kvItem{caps(""), mfs(codec.Uint32(256)), version("2.0")}, nil, nil, 0},
		{"version with spaces", []kvItem{version(" 2.0 "), mfs(codec.Uint32(4096)), caps("")}, nil, nil, 0},
		{"version 2.00", []kvItem{version("2.00"), mfs(codec.Uint32(4096)), caps("")}, nil, nil, 0},
		{"version 2.1", []kvItem{version("2.1"), mfs(codec.Uint32(4096)), caps("")}, nil, codec.ErrUnsupportedVersion, codec.StatusBadVersion},
		{"version 1.0", []kvItem{version("1.0"), mfs(codec.Uint32(4096)), caps("")}, nil, codec.ErrUnsupportedVersion, codec.StatusBadVersion},
		{"version abc", []kvItem{version("abc"), mfs(codec.Uint32(4096)), caps("")}, nil, codec.ErrUnsupportedVersion, codec.StatusBadVersion},
		{"version empty", []kvItem{version(""), mfs(codec.Uint32(4096)), caps("")}, nil, codec.ErrUnsupportedVersion, codec.StatusBadVersion},
		{"version 2.0,3.0 is not a version", []kvItem{version("2.0,3.0"), mfs(codec.Uint32(4096)), caps("")}, nil, codec.ErrUnsupportedVersion, codec.StatusBadVersion},
		{"version missing", []kvItem{mfs(codec.Uint32(4096)), caps("")}, nil, codec.ErrNoVersion, codec.StatusNoVersion},
		{"max-frame-size missing", []kvItem{version("2.0"), caps("")}, nil, codec.ErrNoFrameSize, codec.StatusNoFrameSize},
		{"max-frame-size 255", []kvItem{version("2.0"), mfs(codec.Uint32(255)), caps("")}, nil, codec.ErrBadFrameSize, codec.StatusBadFrameSize},
		{"max-frame-size == offer", []kvItem{version("2.0"), mfs(codec.Uint32(offer)), caps("")}, nil, nil, 0},
		{"max-frame-size offer+1", []kvItem{version("2.0"), mfs(codec.Uint32(offer + 1)), caps("")}, nil, codec.ErrBadFrameSize, codec.StatusBadFrameSize},
		{"max-frame-size 100000", []kvItem{version("2.0"), mfs(codec.Uint32(100000)), caps("")}, nil, codec.ErrBadFrameSize, codec.StatusBadFrameSize},
		{"max-frame-size as INT64", []kvItem{version("2.0"), mfs(codec.Int64(4096)), caps("")}, nil, nil, 0},
		{"max-frame-size as STRING", []kvItem{version("2.0"), mfs(codec.String("4096")), caps("")}, codec.ErrBadKVType, nil, codec.StatusInvalid},
		{"version as INT32", []kvItem{{"version", codec.Int32(2)}, mfs(codec.Uint32(4096)), caps("")}, codec.ErrBadKVType, nil, codec.StatusInvalid},
		{"capabilities missing", []kvItem{version("2.0"), mfs(codec.Uint32(4096))}, nil, codec.ErrNoCapabilities, codec.StatusNoCapabilities},
		{"unknown keys", []kvItem{{"x", codec.Null()}, version("2.0"), {"y", codec.Int64(-1)}, mfs(codec.Uint32(4096)), caps(""), {"z", codec.Binary(nil)}}, nil, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h codec.AgentHello
			err := h.Decode(kvPayload(tc.items...))
			if tc.decErr != nil {
				require.ErrorIs(t, err, tc.decErr)
				requireStatus(t, err, tc.status)
				return
			}
			require.NoError(t, err)
			err = h.Validate(offer)
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			requireStatus(t, err, tc.status)
		})
	}
	t.Run("fields", func(t *testing.T) {
		var h codec.AgentHello
		require.NoError(t, h.Decode(kvPayload(version("2.0"), mfs(codec.Uint32(4096)), caps(" async ,pipelining"))))
		require.Equal(t, codec.AgentHello{
			Version: []byte("2.0"), MaxFrameSize: 4096, HasMaxFrameSize: true,
			Capabilities: codec.CapAsync | codec.CapPipelining, HasCapabilities: true,
		}, h)
		// Decode resets what a previous Decode found.
		require.NoError(t, h.Decode(nil))
		require.Equal(t, codec.AgentHello{}, h)
	})
}

func TestAppendAgentHello(t *testing.T) {
	cases := []struct {
		name string
		mfs  uint32
		caps codec.Capabilities
		want string
	}{
		{"pipelining", 16380, codec.CapPipelining, `00 00 00 40 65 00 00 00 01 00 00
			07 "version" 08 03 "2.0"
			0e "max-frame-size" 03 fc f0 06
			0c "capabilities" 08 0a "pipelining"`},
		{"no capabilities", 256, 0, `00 00 00 35 65 00 00 00 01 00 00
			07 "version" 08 03 "2.0"
			0e "max-frame-size" 03 f0 01
			0c "capabilities" 08 00`},
		{"all three", 65532, codec.CapPipelining | codec.CapAsync | codec.CapFragmentation, `00 00 00 54 65 00 00 00 01 00 00
			07 "version" 08 03 "2.0"
			0e "max-frame-size" 03 fc f0 1e
			0c "capabilities" 08 1e "pipelining,async,fragmentation"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := codec.AppendAgentHello([]byte("zz"), tc.mfs, tc.caps)
			require.Equal(t, cat([]byte("zz"), hx(tc.want)), got)
			f, err := codec.DecodeFrame(got[2:], codec.MaxFrameLen)
			require.NoError(t, err)
			var h codec.AgentHello
			require.NoError(t, h.Decode(f.Payload))
			require.NoError(t, h.Validate(65532))
			require.Equal(t, tc.caps, h.Capabilities)
			require.Equal(t, tc.mfs, h.MaxFrameSize)
		})
	}
}

// TestHelloItemGivenTwice: in both HELLOs an item given twice keeps its
// last value, and a bad type on its second occurrence is still an error.
func TestHelloItemGivenTwice(t *testing.T) {
	var hh codec.HAProxyHello
	require.NoError(t, hh.Decode(kvPayload(itemVersions, itemMFS, itemCaps,
		kvItem{"max-frame-size", codec.Uint32(4096)}, kvItem{"capabilities", codec.String("pipelining")},
		kvItem{"engine-id", codec.String("a")}, kvItem{"engine-id", codec.String("b")})))
	require.Equal(t, uint32(4096), hh.MaxFrameSize)
	require.Equal(t, codec.CapPipelining, hh.Capabilities)
	require.Equal(t, []byte("b"), hh.EngineID)
	require.ErrorIs(t, hh.Decode(kvPayload(itemVersions, itemMFS, itemCheck, kvItem{"healthcheck", codec.Int32(1)})), codec.ErrBadKVType)

	var ah codec.AgentHello
	version := kvItem{"version", codec.String("2.0")}
	mfs := func(v codec.Value) kvItem { return kvItem{"max-frame-size", v} }
	caps := func(s string) kvItem { return kvItem{"capabilities", codec.String(s)} }
	require.NoError(t, ah.Decode(kvPayload(version, mfs(codec.Uint32(16380)), caps("async"),
		mfs(codec.Uint32(4096)), caps("pipelining"))))
	require.Equal(t, uint32(4096), ah.MaxFrameSize)
	require.Equal(t, codec.CapPipelining, ah.Capabilities)
	require.True(t, ah.HasCapabilities)
	require.ErrorIs(t, ah.Decode(kvPayload(version, mfs(codec.Uint32(4096)), caps(""), mfs(codec.String("1")))), codec.ErrBadKVType)
}
