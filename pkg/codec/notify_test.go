package codec_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// checkRequest is the NOTIFY payload annotated in spop.md §5.5 (2.6.12).
const checkRequest = `0d "check-request" 06
	02 "ip"       06 7f 00 00 01
	04 "path"     08 02 "/x"
	02 "ua"       08 0b "curl/7.88.1"
	04 "body"     09 05 "hello"
	08 "body_len" 04 05
	04 "port"     04 f8 ac 0a`

func TestNotifyCheckRequest(t *testing.T) {
	wire := hx(`00 00 00 57 03 00 00 00 01 02 01` + checkRequest)
	f, err := codec.DecodeFrame(wire, codec.DefaultMaxFrameSize)
	require.NoError(t, err)
	require.Equal(t, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 2, FrameID: 1}, f.Header)

	var n codec.Notify
	require.NoError(t, n.Decode(f.Payload))
	require.Len(t, n.Messages, 1)
	m, ok := n.Message("check-request")
	require.True(t, ok)
	require.Same(t, &n.Messages[0], m)
	require.Len(t, m.Args, 6)

	ip, ok := m.Arg("ip")
	require.True(t, ok)
	a, ok := ip.Addr()
	require.True(t, ok)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), a)
	for name, want := range map[string]string{"path": "/x", "ua": "curl/7.88.1", "body": "hello"} {
		v, ok := m.Arg(name)
		require.True(t, ok, name)
		s, ok := v.String()
		require.True(t, ok)
		require.Equal(t, want, s)
	}
	body, _ := m.Arg("body")
	require.Equal(t, codec.TypeBinary, body.Type())
	for name, want := range map[string]int64{"body_len": 5, "port": 23480} {
		v, ok := m.Arg(name)
		require.True(t, ok, name)
		require.Equal(t, codec.TypeInt64, v.Type())
		i, ok := v.Int()
		require.True(t, ok)
		require.Equal(t, want, i)
	}
	_, ok = m.Arg("missing")
	require.False(t, ok)
	_, ok = n.Message("other")
	require.False(t, ok)

	// Re-encoded with AppendMessage, byte for byte.
	got, err := codec.AppendMessage(nil, "check-request", m.Args...)
	require.NoError(t, err)
	require.Equal(t, f.Payload, got)
}

// notifyCase is one NOTIFY payload and what Decode must make of it.
type notifyCase struct {
	name    string
	payload []byte
	want    []wantMessage // nil with err set
	err     error
}

type wantMessage struct {
	name string
	args []codec.Arg
}

func arg(name string, v codec.Value) codec.Arg { return codec.Arg{Name: []byte(name), Value: v} }

func message(t testing.TB, name string, args ...codec.Arg) []byte {
	t.Helper()
	b, err := codec.AppendMessage(nil, name, args...)
	require.NoError(t, err)
	return b
}

func TestNotifyDecode(t *testing.T) {
	many := make([]codec.Arg, 255)
	for i := range many {
		many[i] = arg(fmt.Sprintf("a%d", i), codec.Int64(int64(i)))
	}
	bigBody := bytes.Repeat([]byte{0xab}, codec.DefaultMaxFrameSize-64)
	cases := []notifyCase{
		{name: "zero messages", payload: nil, want: []wantMessage{}},
		{name: "zero messages, empty slice", payload: []byte{}, want: []wantMessage{}},
		{name: "one message, zero args", payload: hx(`06 "noargs" 00`), want: []wantMessage{{"noargs", nil}}},
		{name: "several messages", payload: cat(
			message(t, "msg-grp-a", arg("a", codec.Int64(1)), arg("b", codec.String("x"))),
			hx(`06 "noargs" 00`),
			message(t, "msg-grp-b", arg("c", codec.Bool(true))),
		), want: []wantMessage{
			{"msg-grp-a", []codec.Arg{arg("a", codec.Int64(1)), arg("b", codec.String("x"))}},
			{"noargs", nil},
			{"msg-grp-b", []codec.Arg{arg("c", codec.Bool(true))}},
		}},
		{name: "255 args", payload: message(t, "many", many...), want: []wantMessage{{"many", many}}},
		{name: "unnamed args", payload: hx(`03 "msg" 02 00 04 f8 ac 0a 00 06 7f 00 00 01`), want: []wantMessage{
			{"msg", []codec.Arg{arg("", codec.Int64(23480)), arg("", codec.Addr(netip.MustParseAddr("127.0.0.1")))}},
		}},
		{name: "empty message name", payload: hx(`00 01 01 "a" 00`), want: []wantMessage{{"", []codec.Arg{arg("a", codec.Null())}}}},
		{name: "every data type", payload: hx(`05 "types" 0f
			04 "null" 00
			06 "bool_f" 01
			06 "bool_t" 11
			07 "bool_31" 31
			05 "int32" 02 2a
			06 "uint32" 03 fc f0 06
			05 "small" 04 05
			03 "neg" 04 fb f0 fe fe fe fe fe fe fe 0e
			06 "uint64" 05 ff f0 fe fe fe fe fe fe fe 0e
			04 "ipv4" 06 c0 00 02 01
			04 "ipv6" 07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
			05 "empty" 08 00
			04 "body" 09 00
			03 "str" 08 03 "GET"
			03 "bin" 09 02 00 ff`), want: []wantMessage{{"types", []codec.Arg{
			arg("null", codec.Null()),
			arg("bool_f", codec.Bool(false)),
			arg("bool_t", codec.Bool(true)),
			arg("bool_31", codec.Bool(false)),
			arg("int32", codec.Int32(42)),
			arg("uint32", codec.Uint32(16380)),
			arg("small", codec.Int64(5)),
			arg("neg", codec.Int64(-5)),
			arg("uint64", codec.Uint64(1<<64-1)),
			arg("ipv4", codec.Addr(netip.MustParseAddr("192.0.2.1"))),
			arg("ipv6", codec.Addr(netip.MustParseAddr("2001:db8::1"))),
			arg("empty", codec.String("")),
			arg("body", codec.Binary(nil)),
			arg("str", codec.String("GET")),
			arg("bin", codec.Binary([]byte{0, 0xff})),
		}}}},
		{name: "STRING with flag bits is BINARY", payload: hx(`01 "m" 03 01 "a" 18 01 "x" 01 "b" 28 00 01 "c" f8 02 "yz"`), want: []wantMessage{
			{"m", []codec.Arg{arg("a", codec.Binary([]byte("x"))), arg("b", codec.Binary(nil)), arg("c", codec.Binary([]byte("yz")))}},
		}},
		{name: "large BINARY near 16380", payload: message(t, "big", arg("body", codec.Binary(bigBody))), want: []wantMessage{
			{"big", []codec.Arg{arg("body", codec.Binary(bigBody))}},
		}},
		// Errors.
		{name: "message name cut", payload: hx(`05 "che"`), err: codec.ErrTruncated},
		{name: "nb-args missing", payload: hx(`03 "msg"`), err: codec.ErrTruncated},
		{name: "nb-args past the payload", payload: hx(`03 "msg" 05 01 "a" 00`), err: codec.ErrTruncated},
		{name: "nb-args 255 with 2 args", payload: hx(`03 "msg" ff 01 "a" 00 01 "b" 00`), err: codec.ErrTruncated},
		{name: "nb-args one too many", payload: hx(`03 "msg" 03 01 "a" 00 01 "b" 00`), err: codec.ErrTruncated},
		{name: "a lone byte after the message", payload: hx(`03 "msg" 01 01 "a" 00 00`), err: codec.ErrTruncated},
		{name: "arg name cut", payload: hx(`03 "msg" 01 05 "ab"`), err: codec.ErrTruncated},
		{name: "arg value missing", payload: hx(`03 "msg" 01 03 "abc"`), err: codec.ErrTruncated},
		{name: "string length past the end", payload: hx(`03 "msg" 01 01 "a" 08 0a "abc"`), err: codec.ErrTruncated},
		{name: "binary length huge", payload: hx(`03 "msg" 01 01 "a" 09 ff f0 fe fe fe fe fe fe fe 0e`), err: codec.ErrTruncated},
		{name: "varint overflow", payload: hx(`03 "msg" 01 01 "a" 04 ff f0 fe fe fe fe fe fe fe 0f`), err: codec.ErrVarintOverflow},
		{name: "second message broken", payload: cat(hx(`06 "noargs" 00`), hx(`03 "msg" 01 01 "a" 06 7f`)), err: codec.ErrTruncated},
	}
	for id := 10; id <= 15; id++ {
		cases = append(cases, notifyCase{
			name:    fmt.Sprintf("type id %d", id),
			payload: cat(hx(`03 "msg" 02 01 "a" 00 01 "b"`), []byte{byte(id)}, hx("00 00 00 00")),
			err:     codec.ErrUnknownDataType,
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n codec.Notify
			// Warm the Notify with another payload: Decode must reset it.
			require.NoError(t, n.Decode(hx(checkRequest)))
			err := n.Decode(tc.payload)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				requireStatus(t, err, codec.StatusInvalid)
				require.Empty(t, n.Messages, "no messages after an error")
				return
			}
			require.NoError(t, err)
			require.Len(t, n.Messages, len(tc.want))
			for i, w := range tc.want {
				m := &n.Messages[i]
				require.Equal(t, w.name, string(m.Name))
				require.Len(t, m.Args, len(w.args))
				for j, a := range w.args {
					require.Equal(t, string(a.Name), string(m.Args[j].Name), "arg %d", j)
					require.Equal(t, a.Value.Type(), m.Args[j].Value.Type(), "arg %s", a.Name)
					require.True(t, a.Value.Equal(m.Args[j].Value), "arg %s", a.Name)
				}
			}
			// And back to the same bytes (flagged type bytes aside).
			if tc.name != "STRING with flag bits is BINARY" && tc.name != "every data type" {
				var re []byte
				for _, m := range n.Messages {
					re, err = codec.AppendMessage(re, string(m.Name), m.Args...)
					require.NoError(t, err)
				}
				require.Equal(t, string(tc.payload), string(re))
			}
		})
	}
}

func TestNotifyArgLookup(t *testing.T) {
	payload := hx(`03 "msg" 05
		01 "a" 04 01
		00 04 02
		01 "a" 04 03
		00 04 04
		01 "b" 00`)
	var n codec.Notify
	require.NoError(t, n.Decode(payload))
	m := &n.Messages[0]
	cases := []struct {
		name  string
		found bool
		want  codec.Value
	}{
		{"a", true, codec.Int64(1)}, // duplicate: the first one
		{"", true, codec.Int64(2)},  // unnamed: the first one
		{"b", true, codec.Null()},
		{"c", false, codec.Value{}},
		{"A", false, codec.Value{}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q", tc.name), func(t *testing.T) {
			v, ok := m.Arg(tc.name)
			require.Equal(t, tc.found, ok)
			require.True(t, tc.want.Equal(v))
		})
	}
	t.Run("positional access sees every duplicate", func(t *testing.T) {
		var got []int64
		for _, a := range m.Args {
			if string(a.Name) == "a" {
				i, _ := a.Value.Int()
				got = append(got, i)
			}
		}
		require.Equal(t, []int64{1, 3}, got)
	})
	t.Run("duplicate message names: Message returns the first", func(t *testing.T) {
		var n codec.Notify
		require.NoError(t, n.Decode(hx(`01 "m" 00 01 "m" 01 00 00`)))
		m, ok := n.Message("m")
		require.True(t, ok)
		require.Empty(t, m.Args)
	})
}

// TestNotifyTruncatedEverywhere cuts NOTIFY payloads at every byte: at a
// message boundary the shorter list decodes, anywhere else it is an error.
func TestNotifyTruncatedEverywhere(t *testing.T) {
	payloads := map[string][]byte{
		"check-request": hx(checkRequest),
		"several":       cat(hx(`06 "noargs" 00`), hx(checkRequest), hx(`00 00`), hx(`01 "m" 01 00 00`)),
	}
	for _, file := range []string{"2.6/notify-all-types-get.hex", "3.2/notify-group.hex", "3.0/notify-response-event.hex", "3.2/notify-client-session.hex"} {
		f, err := codec.DecodeFrame(loadVector(t, file), codec.MaxFrameLen)
		require.NoError(t, err)
		payloads[file] = f.Payload
	}
	for name, payload := range payloads {
		t.Run(name, func(t *testing.T) {
			// Message boundaries, found by decoding prefixes message by
			// message with the primitives.
			ends := map[int]int{0: 0}
			off, count := 0, 0
			for off < len(payload) {
				_, l, err := codec.ParseBytes(payload[off:])
				require.NoError(t, err)
				off += l
				nb := int(payload[off])
				off++
				for range nb {
					_, l, err := codec.ParseBytes(payload[off:])
					require.NoError(t, err)
					off += l
					_, l, err = codec.ParseValue(payload[off:])
					require.NoError(t, err)
					off += l
				}
				count++
				ends[off] = count
			}
			var n codec.Notify
			for cut := 0; cut <= len(payload); cut++ {
				err := n.Decode(payload[:cut])
				if msgs, ok := ends[cut]; ok {
					require.NoError(t, err, "cut at message boundary %d", cut)
					require.Len(t, n.Messages, msgs)
					continue
				}
				require.Error(t, err, "cut at %d of %d", cut, len(payload))
				require.ErrorIs(t, err, codec.ErrTruncated, "cut at %d", cut)
				requireStatus(t, err, codec.StatusInvalid)
				require.Empty(t, n.Messages)
			}
		})
	}
}

func TestNotifyReuse(t *testing.T) {
	var n codec.Notify
	require.NoError(t, n.Decode(hx(checkRequest)))
	first := n.Messages[0]
	require.Len(t, first.Args, 6)

	require.NoError(t, n.Decode(hx(`01 "a" 01 01 "x" 11 01 "b" 00`)))
	require.Len(t, n.Messages, 2)
	require.Equal(t, "a", string(n.Messages[0].Name))
	require.Len(t, n.Messages[0].Args, 1)
	require.Empty(t, n.Messages[1].Args)
	// A message's Args cannot grow into the next message's.
	require.Equal(t, len(n.Messages[0].Args), cap(n.Messages[0].Args))

	require.Error(t, n.Decode(hx(`01 "a" 02 00 00`)))
	require.Empty(t, n.Messages)
	require.NoError(t, n.Decode(hx(checkRequest)))
	require.Len(t, n.Messages[0].Args, 6)

	n.Reset()
	require.Empty(t, n.Messages)
	require.NoError(t, n.Decode(nil))
	require.Empty(t, n.Messages)
}

func TestAppendMessage(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		got, err := codec.AppendMessage([]byte{0xaa}, "check-request",
			arg("ip", codec.Addr(netip.MustParseAddr("127.0.0.1"))),
			arg("path", codec.String("/x")),
			arg("ua", codec.String("curl/7.88.1")),
			arg("body", codec.Binary([]byte("hello"))),
			arg("body_len", codec.Int64(5)),
			arg("port", codec.Int64(23480)),
		)
		require.NoError(t, err)
		require.Equal(t, cat([]byte{0xaa}, hx(checkRequest)), got)
	})
	t.Run("no args", func(t *testing.T) {
		got, err := codec.AppendMessage(nil, "noargs")
		require.NoError(t, err)
		require.Equal(t, hx(`06 "noargs" 00`), got)
	})
	t.Run("256 args refused, nothing appended", func(t *testing.T) {
		args := make([]codec.Arg, 256)
		got, err := codec.AppendMessage([]byte("keep"), "m", args...)
		require.ErrorIs(t, err, codec.ErrTooManyArgs)
		requireStatus(t, err, codec.StatusInvalid)
		require.Equal(t, []byte("keep"), got)
	})
}
