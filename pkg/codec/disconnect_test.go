package codec_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// allStatuses are the codes of spop.md §7.1 with HAProxy's messages.
var allStatuses = []struct {
	s   codec.Status
	msg string
}{
	{0, "normal"},
	{1, "I/O error"},
	{2, "a timeout occurred"},
	{3, "frame is too big"},
	{4, "invalid frame received"},
	{5, "version value not found"},
	{6, "max-frame-size value not found"},
	{7, "capabilities value not found"},
	{8, "unsupported version"},
	{9, "max-frame-size too big or too small"},
	{10, "fragmentation not supported"},
	{11, "invalid interlaced frames"},
	{12, "frame-id not found"},
	{13, "resource allocation error"},
	{99, "an unknown error occurred"},
}

func TestDisconnectEveryStatus(t *testing.T) {
	for _, st := range allStatuses {
		t.Run(fmt.Sprintf("%d %s", st.s, st.msg), func(t *testing.T) {
			require.Equal(t, st.msg, st.s.String())

			// HAPROXY-DISCONNECT as HAProxy writes it, by hand.
			wire := cat(
				hx(`02 00 00 00 01 00 00 0b "status-code" 03`), codec.AppendVarint(nil, uint64(st.s)),
				hx(`07 "message" 08`), codec.AppendString(nil, st.msg),
			)
			wire = cat(prefix(uint32(len(wire))), wire)
			require.Equal(t, wire, codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, st.s, st.msg))

			f, err := codec.DecodeFrame(wire, codec.DefaultMaxFrameSize)
			require.NoError(t, err)
			require.Equal(t, codec.FrameHAProxyDisconnect, f.Type)
			var d codec.Disconnect
			require.NoError(t, d.Decode(f.Payload))
			require.Equal(t, codec.Disconnect{Status: st.s, HasStatus: true, Message: []byte(st.msg)}, d)

			// The agent's reply.
			reply := codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, st.s, st.msg)
			require.Equal(t, byte(codec.FrameAgentDisconnect), reply[4])
			require.Equal(t, wire[5:], reply[5:])
		})
	}
}

func TestDisconnectDecode(t *testing.T) {
	status := func(v codec.Value) kvItem { return kvItem{"status-code", v} }
	msg := func(s string) kvItem { return kvItem{"message", codec.String(s)} }
	cases := []struct {
		name  string
		items []kvItem
		want  codec.Disconnect
		err   error
	}{
		{"typical", []kvItem{status(codec.Uint32(2)), msg("a timeout occurred")}, codec.Disconnect{Status: 2, HasStatus: true, Message: []byte("a timeout occurred")}, nil},
		{"message first", []kvItem{msg("normal"), status(codec.Uint32(0))}, codec.Disconnect{Status: 0, HasStatus: true, Message: []byte("normal")}, nil},
		{"missing message", []kvItem{status(codec.Uint32(8))}, codec.Disconnect{Status: 8, HasStatus: true}, nil},
		{"missing status", []kvItem{msg("x")}, codec.Disconnect{Message: []byte("x")}, nil},
		{"empty payload", nil, codec.Disconnect{}, nil},
		{"empty message", []kvItem{status(codec.Uint32(0)), msg("")}, codec.Disconnect{HasStatus: true, Message: []byte{}}, nil},
		{"agent code 300", []kvItem{status(codec.Uint32(300)), msg("agent")}, codec.Disconnect{Status: 300, HasStatus: true, Message: []byte("agent")}, nil},
		{"status as INT32", []kvItem{status(codec.Int32(4))}, codec.Disconnect{Status: 4, HasStatus: true}, nil},
		{"status as INT64", []kvItem{status(codec.Int64(9))}, codec.Disconnect{Status: 9, HasStatus: true}, nil},
		{"status as UINT64", []kvItem{status(codec.Uint64(10))}, codec.Disconnect{Status: 10, HasStatus: true}, nil},
		{"message as BINARY", []kvItem{status(codec.Uint32(1)), {"message", codec.Binary([]byte("I/O error"))}}, codec.Disconnect{Status: 1, HasStatus: true, Message: []byte("I/O error")}, nil},
		{"status 2^32-1", []kvItem{status(codec.Uint32(1<<32 - 1))}, codec.Disconnect{Status: 1<<32 - 1, HasStatus: true}, nil},
		{"status UINT64 max saturates", []kvItem{status(codec.Uint64(1<<64 - 1))}, codec.Disconnect{Status: 1<<32 - 1, HasStatus: true}, nil},
		{"status as STRING", []kvItem{status(codec.String("4"))}, codec.Disconnect{}, codec.ErrBadKVType},
		{"message as INT32", []kvItem{status(codec.Uint32(4)), {"message", codec.Int32(4)}}, codec.Disconnect{}, codec.ErrBadKVType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d codec.Disconnect
			err := d.Decode(kvPayload(tc.items...))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				requireStatus(t, err, codec.StatusInvalid)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, d)
			require.NotEmpty(t, d.Status.String(), "any status from the wire prints")
		})
	}
	t.Run("unknown extra keys of every type", func(t *testing.T) {
		for _, ty := range everyType {
			for pos := range 3 {
				items := []kvItem{status(codec.Uint32(10)), msg("fragmentation not supported")}
				items = append(items[:pos:pos], append([]kvItem{{"x-" + ty.name, ty.v}}, items[pos:]...)...)
				var d codec.Disconnect
				require.NoError(t, d.Decode(kvPayload(items...)), "%s at %d", ty.name, pos)
				require.Equal(t, codec.Disconnect{Status: 10, HasStatus: true, Message: []byte("fragmentation not supported")}, d)
			}
		}
	})
	t.Run("unknown key with type id 12", func(t *testing.T) {
		var d codec.Disconnect
		err := d.Decode(cat(hx(`01 "x" 0c`), kvPayload(status(codec.Uint32(0)))))
		require.ErrorIs(t, err, codec.ErrUnknownDataType)
	})
}

func TestAppendDisconnectMessageLength(t *testing.T) {
	cases := []struct {
		name string
		in   int
		want int
	}{
		{"empty", 0, 0},
		{"254", 254, 254},
		{"255 kept", 255, 255},
		{"256 cut to 255", 256, 255},
		{"1000 cut to 255", 1000, 255},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := strings.Repeat("m", tc.in)
			wire := codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, 100, msg)
			f, err := codec.DecodeFrame(wire, codec.DefaultMaxFrameSize)
			require.NoError(t, err)
			require.Equal(t, codec.Header{Type: codec.FrameAgentDisconnect, Flags: codec.FlagFin}, f.Header)
			var d codec.Disconnect
			require.NoError(t, d.Decode(f.Payload))
			require.Equal(t, codec.Status(100), d.Status)
			require.Len(t, d.Message, tc.want)
			require.LessOrEqual(t, len(d.Message), codec.MaxDisconnectMessageLen)
			require.Equal(t, msg[:tc.want], string(d.Message))
		})
	}
}
