package codec_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

func TestAckNoActions(t *testing.T) {
	// spop.md §2.1: the smallest legal frame, an ACK with no actions.
	require.Equal(t, hx("00 00 00 07 67 00 00 00 01 00 00"), codec.AppendAck(nil, 0, 0, nil))
	require.Equal(t, hx("00 00 00 07 67 00 00 00 01 01 01"), codec.AppendAck(nil, 1, 1, nil))
	require.Equal(t, hx("00 00 00 07 67 00 00 00 01 02 01"), codec.AppendAck(nil, 2, 1, []byte{}))
	// Large ids: 5- and 10-byte varints.
	require.Equal(t, hx("00 00 00 14 67 00 00 00 01 ff f0 fe fe 7e ff f0 fe fe fe fe fe fe fe 0e"),
		codec.AppendAck(nil, 1<<32-1, 1<<64-1, nil))
	// Appends to what dst holds.
	require.Equal(t, hx("aa 00 00 00 07 67 00 00 00 01 00 00"), codec.AppendAck([]byte{0xaa}, 0, 0, nil))
}

// TestAckAnnotated builds the ACK annotated in spop.md §5.6.
func TestAckAnnotated(t *testing.T) {
	want := hx(`00 00 00 25 67 00 00 00 01 02 01
		01 03 02 05 "score" 02 2a
		01 03 02 07 "blocked" 01
		02 02 02 03 "foo"`)
	var actions []byte
	var err error
	actions, err = codec.AppendSetVar(actions, codec.ScopeTransaction, "score", codec.Int32(42))
	require.NoError(t, err)
	actions, err = codec.AppendSetVar(actions, codec.ScopeTransaction, "blocked", codec.Bool(false))
	require.NoError(t, err)
	actions, err = codec.AppendUnsetVar(actions, codec.ScopeTransaction, "foo")
	require.NoError(t, err)
	require.Equal(t, want, codec.AppendAck(nil, 2, 1, actions))

	// The same with BeginFrame/FinishFrame, straight into the frame.
	dst, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: 2, FrameID: 1})
	dst, err = codec.AppendSetVar(dst, codec.ScopeTransaction, "score", codec.Int32(42))
	require.NoError(t, err)
	dst, err = codec.AppendSetVar(dst, codec.ScopeTransaction, "blocked", codec.Bool(false))
	require.NoError(t, err)
	dst, err = codec.AppendUnsetVar(dst, codec.ScopeTransaction, "foo")
	require.NoError(t, err)
	l, err := codec.FinishFrame(dst, start, codec.DefaultMaxFrameSize-1)
	require.NoError(t, err)
	require.Equal(t, uint32(37), l)
	require.Equal(t, want, dst)

	// And decoded back.
	f, err := codec.DecodeFrame(dst, codec.MaxFrameLen)
	require.NoError(t, err)
	var a codec.Ack
	require.NoError(t, a.Decode(f.Payload))
	require.Len(t, a.Actions, 3)
	score, ok := a.Action("score")
	require.True(t, ok)
	require.Equal(t, codec.ActionSetVar, score.Type)
	require.Equal(t, codec.ScopeTransaction, score.Scope)
	require.True(t, codec.Int32(42).Equal(score.Value))
	foo, ok := a.Action("foo")
	require.True(t, ok)
	require.Equal(t, codec.ActionUnsetVar, foo.Type)
	require.True(t, foo.Value.IsNull())
	_, ok = a.Action("bar")
	require.False(t, ok)
}

// TestAckSetVarEveryTypeEveryScope: set-var is 01 03 <scope> <name> <typed
// value>, with the scope a raw byte (spop.md §5.6). The typed values are
// written by hand.
func TestAckSetVarEveryTypeEveryScope(t *testing.T) {
	values := []struct {
		name  string
		v     codec.Value
		typed string
	}{
		{"null", codec.Null(), "00"},
		{"bool true", codec.Bool(true), "11"},
		{"bool false", codec.Bool(false), "01"},
		{"int32", codec.Int32(42), "02 2a"},
		{"negative int32", codec.Int32(-7), "02 f9 f0 fe fe fe fe fe fe fe 0e"},
		{"uint32", codec.Uint32(4_000_000_000), "03 f0 f1 e3 99 76"},
		{"int64", codec.Int64(-1234567890123), "04 f5 a4 9e 80 c6 df fc fe fe 0e"},
		{"uint64", codec.Uint64(1234567890123456789), "05 f5 82 af f9 bd f3 a0 87 88 00"},
		{"uint64 >= 2^63", codec.Uint64(1<<63 + 5), "05 f5 f1 fe fe fe fe fe fe fe 06"},
		{"ipv4", codec.Addr(netip.MustParseAddr("192.0.2.33")), "06 c0 00 02 21"},
		{"ipv6", codec.Addr(netip.MustParseAddr("2001:db8::42")), "07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 42"},
		{"string", codec.String("hello-from-agent"), `08 10 "hello-from-agent"`},
		{"empty string", codec.String(""), "08 00"},
		{"binary", codec.Binary([]byte{0, 1, 0xfe, 0xff}), "09 04 00 01 fe ff"},
	}
	scopes := []struct {
		s    codec.Scope
		byte string
		name string
	}{
		{codec.ScopeProcess, "00", "proc"},
		{codec.ScopeSession, "01", "sess"},
		{codec.ScopeTransaction, "02", "txn"},
		{codec.ScopeRequest, "03", "req"},
		{codec.ScopeResponse, "04", "res"},
	}
	for _, sc := range scopes {
		for _, val := range values {
			t.Run(sc.name+" "+val.name, func(t *testing.T) {
				want := hx(`01 03 ` + sc.byte + ` 03 "var" ` + val.typed)
				got, err := codec.AppendSetVar([]byte("x"), sc.s, "var", val.v)
				require.NoError(t, err)
				require.Equal(t, cat([]byte("x"), want), got)

				var a codec.Ack
				require.NoError(t, a.Decode(want))
				require.Len(t, a.Actions, 1)
				act := a.Actions[0]
				require.Equal(t, codec.ActionSetVar, act.Type)
				require.Equal(t, sc.s, act.Scope)
				require.Equal(t, sc.name, act.Scope.String())
				require.Equal(t, "var", string(act.Name))
				require.True(t, val.v.Equal(act.Value))
			})
		}
		t.Run(sc.name+" unset-var", func(t *testing.T) {
			want := hx(`02 02 ` + sc.byte + ` 03 "foo"`)
			got, err := codec.AppendUnsetVar(nil, sc.s, "foo")
			require.NoError(t, err)
			require.Equal(t, want, got)
			var a codec.Ack
			require.NoError(t, a.Decode(want))
			require.Equal(t, []codec.Action{{Type: codec.ActionUnsetVar, Scope: sc.s, Name: []byte("foo")}}, a.Actions)
		})
	}
}

func TestAckVarNames(t *testing.T) {
	name63 := strings.Repeat("n", codec.MaxVarNameLen)
	name64 := strings.Repeat("n", codec.MaxVarNameLen+1)
	cases := []struct {
		name  string
		scope codec.Scope
		vname string
		err   error
	}{
		{"63 bytes accepted", codec.ScopeTransaction, name63, nil},
		{"1 byte accepted", codec.ScopeTransaction, "x", nil},
		{"64 bytes refused", codec.ScopeTransaction, name64, codec.ErrVarNameTooLong},
		{"1000 bytes refused", codec.ScopeTransaction, strings.Repeat("n", 1000), codec.ErrVarNameTooLong},
		{"empty refused", codec.ScopeTransaction, "", codec.ErrVarNameEmpty},
		{"scope 5 refused", codec.Scope(5), "x", codec.ErrBadScope},
		{"scope 255 refused", codec.Scope(255), "x", codec.ErrBadScope},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			set, serr := codec.AppendSetVar(dst, tc.scope, tc.vname, codec.Int32(1))
			unset, uerr := codec.AppendUnsetVar(dst, tc.scope, tc.vname)
			if tc.err != nil {
				for _, err := range []error{serr, uerr} {
					require.ErrorIs(t, err, tc.err)
					requireStatus(t, err, codec.StatusInvalid)
				}
				require.Equal(t, []byte("keep"), set, "nothing appended")
				require.Equal(t, []byte("keep"), unset, "nothing appended")
				return
			}
			require.NoError(t, serr)
			require.NoError(t, uerr)
			require.Equal(t, cat([]byte("keep"), hx("01 03 02"), codec.AppendString(nil, tc.vname), hx("02 01")), set)
			require.Equal(t, cat([]byte("keep"), hx("02 02 02"), codec.AppendString(nil, tc.vname)), unset)
		})
	}
}

// TestAckTooBig: actions that do not fit the negotiated size make
// FinishFrame fail, and the caller drops the frame (the connection stays).
func TestAckTooBig(t *testing.T) {
	const limit = codec.DefaultMaxFrameSize - 1 // spop.md §2.2: the safe ceiling
	value := codec.String(strings.Repeat("v", 1000))
	dst := []byte("earlier frames")
	dst, start := codec.BeginFrame(dst, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: 7, FrameID: 1})
	var err error
	for i := 0; len(dst)-start-codec.LengthPrefixLen <= limit; i++ {
		dst, err = codec.AppendSetVar(dst, codec.ScopeTransaction, fmt.Sprintf("v%d", i), value)
		require.NoError(t, err)
	}
	before := append([]byte(nil), dst...)
	l, err := codec.FinishFrame(dst, start, limit)
	require.ErrorIs(t, err, codec.ErrFrameTooBig)
	requireStatus(t, err, codec.StatusFrameTooBig)
	require.Zero(t, l)
	require.Equal(t, before, dst)
	dst = dst[:start]
	require.Equal(t, "earlier frames", string(dst))
}

func TestAckDecodeErrors(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		err     error
	}{
		{"one byte", "01", codec.ErrTruncated},
		{"two bytes", "01 03", codec.ErrTruncated},
		{"set-var with nb-args 2", `01 02 02 01 "a" 00`, codec.ErrBadAction},
		{"unset-var with nb-args 3", `02 03 02 01 "a"`, codec.ErrBadAction},
		{"action type 9", `09 03 02 01 "a" 00`, codec.ErrBadAction},
		{"action type 0", `00 00 00`, codec.ErrBadAction},
		{"scope 5", `01 03 05 01 "a" 00`, codec.ErrBadAction},
		{"name cut", `01 03 02 05 "ab"`, codec.ErrTruncated},
		{"value missing", `01 03 02 01 "a"`, codec.ErrTruncated},
		{"value cut", `01 03 02 01 "a" 06 7f 00`, codec.ErrTruncated},
		{"unknown data type", `01 03 02 01 "a" 0b`, codec.ErrUnknownDataType},
		{"second action broken", `02 02 02 01 "a" 01 03`, codec.ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var a codec.Ack
			require.NoError(t, a.Decode(hx(`02 02 01 01 "z"`)))
			err := a.Decode(hx(tc.payload))
			require.ErrorIs(t, err, tc.err)
			requireStatus(t, err, codec.StatusInvalid)
			require.Empty(t, a.Actions)
		})
	}
	t.Run("empty payload", func(t *testing.T) {
		var a codec.Ack
		require.NoError(t, a.Decode(nil))
		require.Empty(t, a.Actions)
	})
}

func TestScopeAndActionStrings(t *testing.T) {
	for s, want := range map[codec.Scope]string{0: "proc", 1: "sess", 2: "txn", 3: "req", 4: "res", 5: "scope?", 255: "scope?"} {
		t.Run(want+fmt.Sprint(uint8(s)), func(t *testing.T) {
			require.Equal(t, want, s.String())
		})
	}
	for a, want := range map[codec.ActionType]string{1: "set-var", 2: "unset-var", 0: "action?", 3: "action?"} {
		t.Run(want+fmt.Sprint(uint8(a)), func(t *testing.T) {
			require.Equal(t, want, a.String())
		})
	}
}
