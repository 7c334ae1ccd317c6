package spoetest_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
)

const txn = agent.ScopeTransaction

// seenArg is one argument as a handler saw it, copied out of the frame.
type seenArg struct {
	Name string
	Type codec.Type
	Val  any
}

// capture returns a handler that records the arguments it sees.
func capture(into *[]seenArg) agent.HandlerFunc {
	return func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		for _, a := range m.Args() {
			s := seenArg{Name: string(a.Name), Type: a.Value.Type()}
			switch t := a.Value.Type(); {
			case t == codec.TypeBool:
				s.Val, _ = a.Value.Bool()
			case t.IsInt():
				s.Val, _ = a.Value.Int()
			case t == codec.TypeIPv4 || t == codec.TypeIPv6:
				s.Val, _ = a.Value.Addr()
			case t == codec.TypeString:
				s.Val, _ = a.Value.String()
			case t == codec.TypeBinary:
				b, _ := a.Value.Bytes()
				s.Val = append([]byte{}, b...)
			}
			*into = append(*into, s)
		}
		return nil
	}
}

// TestArgs: each constructor gives the type HAProxy would send, and the
// handler reads back exactly the value, after encoding and decoding.
func TestArgs(t *testing.T) {
	tests := []struct {
		name string
		arg  agent.Arg
		want seenArg
	}{
		{"string", spoetest.Str("path", "/a b"), seenArg{"path", codec.TypeString, "/a b"}},
		{"empty string", spoetest.Str("h", ""), seenArg{"h", codec.TypeString, ""}},
		{"binary", spoetest.Bin("body", []byte{0, 1, 0xff}), seenArg{"body", codec.TypeBinary, []byte{0, 1, 0xff}}},
		{"int", spoetest.Int("n", 5), seenArg{"n", codec.TypeInt64, int64(5)}},
		{"negative int", spoetest.Int("n", -1<<40), seenArg{"n", codec.TypeInt64, int64(-1 << 40)}},
		{"bool true", spoetest.Bool("b", true), seenArg{"b", codec.TypeBool, true}},
		{"bool false", spoetest.Bool("b", false), seenArg{"b", codec.TypeBool, false}},
		{"ipv4", spoetest.IP("ip", "192.0.2.1"), seenArg{"ip", codec.TypeIPv4, netip.MustParseAddr("192.0.2.1")}},
		{"ipv4-mapped", spoetest.IP("ip", "::ffff:192.0.2.1"), seenArg{"ip", codec.TypeIPv4, netip.MustParseAddr("192.0.2.1")}},
		{"ipv6", spoetest.IP("ip", "2001:db8::1"), seenArg{"ip", codec.TypeIPv6, netip.MustParseAddr("2001:db8::1")}},
		{"addr", spoetest.Addr("ip", netip.IPv6Loopback()), seenArg{"ip", codec.TypeIPv6, netip.IPv6Loopback()}},
		{"null", spoetest.Null("ua"), seenArg{"ua", codec.TypeNull, nil}},
		{"unnamed", spoetest.Arg("", codec.Uint32(7)), seenArg{"", codec.TypeUint32, int64(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []seenArg
			res := spoetest.Run(t, capture(&got), spoetest.NewMessage("m", tt.arg))
			require.Equal(t, 0, res.Code())
			require.Equal(t, []seenArg{tt.want}, got)
		})
	}
	t.Run("several, in order, names repeated", func(t *testing.T) {
		var got []seenArg
		spoetest.Run(t, capture(&got), spoetest.NewMessage("m",
			spoetest.Int("a", 1), spoetest.Null("b"), spoetest.Int("a", 2)))
		require.Equal(t, []seenArg{{"a", codec.TypeInt64, int64(1)}, {"b", codec.TypeNull, nil}, {"a", codec.TypeInt64, int64(2)}}, got)
	})
	t.Run("invalid IP panics", func(t *testing.T) {
		require.Panics(t, func() { spoetest.IP("ip", "192.0.2") })
	})
}

// TestCall: what a handler does becomes the Result the agent's rules give.
func TestCall(t *testing.T) {
	errBoom := errors.New("boom")
	past := func() (context.Context, context.CancelFunc) {
		return context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	}
	tests := []struct {
		name     string
		ctx      func() (context.Context, context.CancelFunc)
		h        agent.HandlerFunc
		wantVars map[string]any
		wantCode int
		check    func(t *testing.T, r *spoetest.Result)
	}{
		{
			name:     "no actions",
			h:        func(context.Context, *agent.Message, *agent.Actions) error { return nil },
			wantVars: map[string]any{},
		},
		{
			name: "every type and scope",
			h: func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				act.SetString(agent.ScopeTransaction, "s", "x")
				act.SetBytes(agent.ScopeRequest, "b", []byte{1, 2})
				act.SetInt(agent.ScopeSession, "i", -3)
				act.SetBool(agent.ScopeResponse, "t", true)
				act.SetIP(agent.ScopeProcess, "ip", netip.MustParseAddr("2001:db8::2"))
				act.Set(agent.ScopeTransaction, "u", codec.Uint64(1<<63))
				act.Unset(agent.ScopeTransaction, "gone")
				return nil
			},
			wantVars: map[string]any{
				"txn.s": "x", "req.b": []byte{1, 2}, "sess.i": int64(-3), "res.t": true,
				"proc.ip": netip.MustParseAddr("2001:db8::2"), "txn.u": int64(-1 << 63), "txn.gone": nil,
			},
		},
		{
			name: "an error keeps the actions",
			h: func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				act.SetBool(txn, "partial", true)
				return errBoom
			},
			wantVars: map[string]any{"txn.partial": true},
			wantCode: agent.ErrCodeHandler,
			check:    func(t *testing.T, r *spoetest.Result) { require.ErrorIs(t, r.Err, errBoom) },
		},
		{
			name: "a panic drops the actions",
			h: func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				act.SetBool(txn, "partial", true)
				panic(errBoom)
			},
			wantVars: map[string]any{},
			wantCode: agent.ErrCodePanic,
			check:    func(t *testing.T, r *spoetest.Result) { require.Equal(t, errBoom, r.Panic) },
		},
		{
			name: "a missed deadline drops the actions",
			ctx:  past,
			h: func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				act.SetBool(txn, "partial", true)
				return nil
			},
			wantVars: map[string]any{},
			wantCode: agent.ErrCodeTimeout,
			check:    func(t *testing.T, r *spoetest.Result) { require.True(t, r.Late) },
		},
		{
			name: "returning the context's error is a timeout",
			h: func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				return context.Canceled
			},
			wantVars: map[string]any{},
			wantCode: agent.ErrCodeTimeout,
			check:    func(t *testing.T, r *spoetest.Result) { require.False(t, r.Late) },
		},
		{
			name: "an invalid action is left out",
			h: func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				act.SetInt(txn, "", 1)
				act.SetInt(txn, strings.Repeat("n", codec.MaxVarNameLen+1), 1)
				act.SetInt(txn, "ok", 2)
				return nil
			},
			wantVars: map[string]any{"txn.ok": int64(2)},
			wantCode: agent.ErrCodeAction,
			check: func(t *testing.T, r *spoetest.Result) {
				require.ErrorIs(t, r.ActionErr, codec.ErrVarNameEmpty)
			},
		},
		{
			name: "actions larger than a frame are dropped",
			h: func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				act.SetString(txn, "big", strings.Repeat("x", codec.DefaultMaxFrameSize))
				return nil
			},
			wantVars: map[string]any{},
			wantCode: agent.ErrCodeTooLarge,
			check:    func(t *testing.T, r *spoetest.Result) { require.True(t, r.TooLarge) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			res, err := spoetest.Call(ctx, tt.h, spoetest.NewMessage("m"))
			require.NoError(t, err)
			require.Equal(t, tt.wantVars, res.Map())
			require.Equal(t, tt.wantCode, res.Code())
			if tt.check != nil {
				tt.check(t, res)
			}
		})
	}
}

// TestCall_Message: the handler gets the message's name and a context with
// the agent's default deadline, and a []byte it keeps past its return is
// overwritten, as the agent's pooled frames are.
func TestCall_Message(t *testing.T) {
	var kept []byte
	var name string
	var deadline time.Time
	start := time.Now()
	res := spoetest.Run(t, func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		name = m.Name()
		deadline, _ = ctx.Deadline()
		kept, _ = m.Bytes("body")
		require.Equal(t, []byte("secret"), kept)
		return nil
	}, spoetest.NewMessage("check-body", spoetest.Bin("body", []byte("secret"))))
	require.Equal(t, 0, res.Code())
	require.Equal(t, "check-body", name)
	require.WithinDuration(t, start.Add(agent.DefaultTimeout), deadline, agent.DefaultTimeout/2)
	require.Equal(t, bytes.Repeat([]byte{0xA5}, len("secret")), kept, "the frame is poisoned once the handler returns")
}

func TestCall_TooManyArgs(t *testing.T) {
	args := make([]agent.Arg, 256)
	for i := range args {
		args[i] = spoetest.Null("a")
	}
	_, err := spoetest.Call(context.Background(), func(context.Context, *agent.Message, *agent.Actions) error { return nil },
		spoetest.NewMessage("m", args...))
	require.ErrorIs(t, err, codec.ErrTooManyArgs)
}

// TestActions: lookups read each variable's last action.
func TestActions(t *testing.T) {
	as := spoetest.Actions{
		{Type: codec.ActionSetVar, Scope: txn, Name: "a", Value: codec.Int64(1)},
		{Type: codec.ActionSetVar, Scope: txn, Name: "a", Value: codec.Int64(2)},
		{Type: codec.ActionSetVar, Scope: txn, Name: "s", Value: codec.String("x")},
		{Type: codec.ActionSetVar, Scope: agent.ScopeRequest, Name: "s", Value: codec.Bool(true)},
		{Type: codec.ActionSetVar, Scope: txn, Name: "b", Value: codec.BinaryString("bin")},
		{Type: codec.ActionSetVar, Scope: txn, Name: "ip", Value: codec.Addr(netip.MustParseAddr("192.0.2.9"))},
		{Type: codec.ActionSetVar, Scope: txn, Name: "gone", Value: codec.Int64(1)},
		{Type: codec.ActionUnsetVar, Scope: txn, Name: "gone"},
		{Type: codec.ActionSetVar, Scope: txn, Name: "null", Value: codec.Null()},
	}
	tests := []struct {
		name   string
		lookup func() (any, bool)
		want   any
		ok     bool
	}{
		{"Int: the last set wins", func() (any, bool) { return as.Int(txn, "a") }, int64(2), true},
		{"Int of a string", func() (any, bool) { return as.Int(txn, "s") }, int64(0), false},
		{"String", func() (any, bool) { return as.String(txn, "s") }, "x", true},
		{"String of a binary", func() (any, bool) { return as.String(txn, "b") }, "bin", true},
		{"Bytes", func() (any, bool) { return as.Bytes(txn, "b") }, []byte("bin"), true},
		{"scopes differ", func() (any, bool) { return as.Bool(agent.ScopeRequest, "s") }, true, true},
		{"Bool of a string", func() (any, bool) { return as.Bool(txn, "s") }, false, false},
		{"IP", func() (any, bool) { return as.IP(txn, "ip") }, netip.MustParseAddr("192.0.2.9"), true},
		{"missing", func() (any, bool) { return as.String(txn, "nope") }, "", false},
		{"unset after set", func() (any, bool) { return as.Int(txn, "gone") }, int64(0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.lookup()
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.ok, ok)
		})
	}

	t.Run("Value of a NULL set", func(t *testing.T) {
		v, ok := as.Value(txn, "null")
		require.True(t, ok)
		require.True(t, v.IsNull())
	})
	t.Run("Has and Unset", func(t *testing.T) {
		for _, c := range []struct {
			scope      agent.Scope
			name       string
			has, unset bool
		}{
			{txn, "a", true, false},
			{txn, "gone", true, true},
			{txn, "null", true, true},
			{txn, "nope", false, false},
			{agent.ScopeSession, "a", false, false},
		} {
			require.Equal(t, c.has, as.Has(c.scope, c.name), "Has(%v, %s)", c.scope, c.name)
			require.Equal(t, c.unset, as.Unset(c.scope, c.name), "Unset(%v, %s)", c.scope, c.name)
		}
	})
	t.Run("Map", func(t *testing.T) {
		require.Equal(t, map[string]any{
			"txn.a": int64(2), "txn.s": "x", "req.s": true, "txn.b": []byte("bin"),
			"txn.ip": netip.MustParseAddr("192.0.2.9"), "txn.gone": nil, "txn.null": nil,
		}, as.Map())
		require.Equal(t, map[string]any{}, spoetest.Actions(nil).Map())
	})
	t.Run("String of an action", func(t *testing.T) {
		require.Equal(t, "set-var txn.a=int64:1", as[0].String())
		require.Equal(t, "unset-var txn.gone", as[7].String())
	})
}

type callKey struct{}

// TestCall_ContextAfterReturn: Call hands the handler the agent's own
// context type, so what production does to a context kept past the handler
// shows in unit tests too: cancelled at return, values kept, derivable.
func TestCall_ContextAfterReturn(t *testing.T) {
	parent := context.WithValue(context.Background(), callKey{}, "v")
	var kept context.Context
	var derived context.Context
	res, err := spoetest.Call(parent, func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		kept = ctx
		var cancel context.CancelFunc
		derived, cancel = context.WithTimeout(ctx, time.Hour)
		_ = cancel // deliberately left to the handler's end, which must cancel it
		require.NoError(t, ctx.Err())
		return nil
	}, spoetest.NewMessage("m"))
	require.NoError(t, err)
	require.Zero(t, res.Code())
	require.ErrorIs(t, kept.Err(), context.Canceled)
	select {
	case <-kept.Done():
	default:
		t.Fatal("the handler's context is not done after Call returned")
	}
	require.Equal(t, "v", kept.Value(callKey{}))
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a context derived in the handler outlived it")
	}
	require.ErrorIs(t, derived.Err(), context.Canceled)
}

func TestCall_ContextDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	res, err := spoetest.Call(ctx, func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		<-ctx.Done()
		return ctx.Err()
	}, spoetest.NewMessage("m"))
	require.NoError(t, err)
	require.True(t, res.Late)
	require.Equal(t, agent.ErrCodeTimeout, res.Code())
}
