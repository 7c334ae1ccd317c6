package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// start serves a on a loopback listener and shuts it down at cleanup.
func start(t *testing.T, a *agent.Agent) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, a.Shutdown(ctx))
		assert.ErrorIs(t, <-served, agent.ErrAgentClosed)
	})
	return l.Addr().String()
}

func echo(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	if s, ok := m.String("id"); ok {
		act.SetString(agent.ScopeTransaction, "id", s)
	}
	return nil
}

func TestHelloNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		caps     string
		mfs      uint32
		opts     []agent.Option
		wantMFS  uint32
		wantCaps codec.Capabilities
	}{
		{"2.6 offer", "pipelining,async", 16380, nil, 16380, codec.CapPipelining | codec.CapFragmentation},
		{"3.2 offer", "pipelining", 16380, nil, 16380, codec.CapPipelining | codec.CapFragmentation},
		{"health check caps", "", 16380, nil, 16380, codec.CapFragmentation},
		{"async on", "pipelining,async", 16380, []agent.Option{agent.WithAsync(true)}, 16380, codec.CapPipelining | codec.CapAsync | codec.CapFragmentation},
		{"async on, not offered", "pipelining", 16380, []agent.Option{agent.WithAsync(true)}, 16380, codec.CapPipelining | codec.CapFragmentation},
		{"no pipelining, no fragmentation", "pipelining,async", 16380, []agent.Option{agent.WithPipelining(false), agent.WithFragmentation(false)}, 16380, 0},
		{"offer of tune.bufsize 65536, answered", "pipelining", 65532, nil, 65532, codec.CapPipelining | codec.CapFragmentation},
		{"offer above our limit", "pipelining", 1 << 20, nil, 65532, codec.CapPipelining | codec.CapFragmentation},
		{"our limit below the offer", "pipelining", 16380, []agent.Option{agent.WithMaxFrameSize(4096)}, 4096, codec.CapPipelining | codec.CapFragmentation},
		{"smallest offer", " pipelining , unknown ", 256, nil, 256, codec.CapPipelining | codec.CapFragmentation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent.New(tc.opts...)
			c := spoptest.Dial(t, start(t, a))
			h := c.Hello(tc.caps, tc.mfs)
			require.NoError(t, h.Validate(tc.mfs))
			assert.Equal(t, "2.0", string(h.Version))
			assert.Equal(t, tc.wantMFS, h.MaxFrameSize)
			assert.Equal(t, tc.wantCaps, h.Capabilities)
		})
	}
}

func TestHelloRejected(t *testing.T) {
	hello := func(versions string, mfs *uint32, extra ...byte) []byte {
		b, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameHAProxyHello, Flags: codec.FlagFin})
		if versions != "-" {
			b = codec.AppendKV(b, "supported-versions", codec.String(versions))
		}
		if mfs != nil {
			b = codec.AppendKV(b, "max-frame-size", codec.Uint32(*mfs))
		}
		b = codec.AppendKV(b, "capabilities", codec.String("pipelining"))
		b = append(b, extra...)
		_, err := codec.FinishFrame(b, start, codec.MaxFrameLen)
		if err != nil {
			panic(err)
		}
		return b
	}
	u := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		name   string
		frame  []byte
		status codec.Status
	}{
		{"version 3.0 only", hello("3.0", u(16380)), codec.StatusBadVersion},
		{"no version", hello("-", u(16380)), codec.StatusBadVersion},
		{"no max-frame-size", hello("2.0", nil), codec.StatusNoFrameSize},
		{"max-frame-size 255", hello("2.0", u(255)), codec.StatusBadFrameSize},
		{"truncated item", hello("2.0", u(16380), 0x05, 'a', 'b'), codec.StatusInvalid},
		{"unknown data type", hello("2.0", u(16380), 0x01, 'x', 0x0a), codec.StatusInvalid},
		{"non-zero ids", codec.AppendFrame(nil, codec.Header{Type: codec.FrameHAProxyHello, Flags: codec.FlagFin, StreamID: 1}, nil), codec.StatusInvalid},
		{"NOTIFY before HELLO", spoptest.NotifyFrame(1, 1), codec.StatusInvalid},
		{"HELLO without FIN", codec.AppendFrame(nil, codec.Header{Type: codec.FrameHAProxyHello}, nil), codec.StatusFragNotSupported},
		{"garbage (HTTP)", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), codec.StatusFrameTooBig},
		{"LENGTH 3", []byte{0, 0, 0, 3, 1, 2, 3}, codec.StatusInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent.New(agent.WithLogger(zaptest.NewLogger(t)))
			c := spoptest.Dial(t, start(t, a))
			c.Write(tc.frame)
			d := c.ReadDisconnect()
			assert.Equal(t, tc.status, d.Status, "message %q", d.Message)
			c.ExpectClosed()
		})
	}
}

func TestHealthCheck(t *testing.T) {
	called := atomic.Int32{}
	a := agent.New()
	a.Message("m", func(context.Context, *agent.Message, *agent.Actions) error { called.Add(1); return nil })
	addr := start(t, a)
	hc, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors", "3.2", "haproxy-hello-healthcheck.hex"))
	require.NoError(t, err)
	frame := mustHex(t, string(hc))
	for range 3 {
		c := spoptest.Dial(t, addr)
		c.Write(frame)
		f := c.ReadFrame()
		require.Equal(t, codec.FrameAgentHello, f.Type)
		require.Equal(t, codec.FlagFin, f.Flags) // 3.2's check wants exactly FIN
		var h codec.AgentHello
		require.NoError(t, h.Decode(f.Payload))
		require.NoError(t, h.Validate(16380))
		c.ExpectClosed()
	}
	require.Zero(t, called.Load())
}

func TestNotifyRoundTrip(t *testing.T) {
	a := agent.New()
	type seen struct {
		ip      netip.Addr
		path    string
		n       int64
		b, null bool
		body    []byte
	}
	got := make(chan seen, 1)
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		var s seen
		s.ip, _ = m.IP("ip")
		s.path, _ = m.String("path")
		s.n, _ = m.Int("n")
		s.b, _ = m.Bool("flag")
		s.null = m.IsNull("missing")
		b, _ := m.Bytes("body")
		s.body = append([]byte(nil), b...)
		got <- s
		act.SetBool(agent.ScopeTransaction, "ok", true)
		act.SetInt(agent.ScopeSession, "n", -5)
		act.SetString(agent.ScopeRequest, "s", "hello")
		act.SetIP(agent.ScopeResponse, "ip", netip.MustParseAddr("2001:db8::1"))
		act.Unset(agent.ScopeProcess, "gone")
		return nil
	})
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining,async", 16380)
	c.Notify(0, 1, spoptest.Msg{Name: "check-request", Args: []codec.Arg{
		spoptest.A("ip", codec.Addr(netip.MustParseAddr("192.0.2.7"))),
		spoptest.A("path", codec.String("/x")),
		spoptest.A("n", codec.Int64(-42)),
		spoptest.A("flag", codec.Bool(true)),
		spoptest.A("missing", codec.Null()),
		spoptest.A("body", codec.Binary([]byte{0, 1, 2})),
	}}, spoptest.Msg{Name: "unregistered"})
	ack := c.ReadAck()
	s := <-got
	assert.Equal(t, seen{ip: netip.MustParseAddr("192.0.2.7"), path: "/x", n: -42, b: true, null: true, body: []byte{0, 1, 2}}, s)
	assert.Equal(t, uint64(0), ack.StreamID)
	assert.Equal(t, uint64(1), ack.FrameID)
	require.Len(t, ack.Actions, 5)
	v, _ := ack.Var("n")
	assert.Equal(t, codec.ScopeSession, v.Scope)
	n, _ := v.Value.Int()
	assert.Equal(t, int64(-5), n)
	v, _ = ack.Var("gone")
	assert.Equal(t, codec.ActionUnsetVar, v.Type)

	// An empty NOTIFY (3.1/3.2.0) still gets an ACK, with no action.
	c.Notify(3, 1)
	ack = c.ReadAck()
	assert.Equal(t, uint64(3), ack.StreamID)
	assert.Empty(t, ack.Actions)
}

// TestPipelinedOutOfOrder keeps 200 NOTIFYs in flight on one connection;
// handlers finish in reverse order and every ACK must match its NOTIFY.
func TestPipelinedOutOfOrder(t *testing.T) {
	const n = 200
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	a := agent.New(agent.WithMaxInFlight(n), agent.WithTimeout(10*time.Second))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		id, _ := m.Int("i")
		started.Done()
		<-release
		time.Sleep(time.Duration(n-id) * 50 * time.Microsecond) // later NOTIFYs answer first
		act.SetInt(agent.ScopeTransaction, "i", id)
		return nil
	})
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	for i := range n {
		c.Notify(uint64(2*i+1), 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("i", codec.Int64(int64(i)))}})
	}
	started.Wait() // all 200 are in flight at once
	close(release)
	seen := make(map[uint64]bool, n)
	order := make([]int64, 0, n)
	for range n {
		ack := c.ReadAck()
		v, ok := ack.Var("i")
		require.True(t, ok)
		i, _ := v.Value.Int()
		require.Equal(t, uint64(2*i+1), ack.StreamID, "ACK carries another NOTIFY's answer")
		require.False(t, seen[ack.StreamID], "duplicate ACK")
		seen[ack.StreamID] = true
		order = append(order, i)
	}
	inOrder := true
	for i := 1; i < len(order); i++ {
		inOrder = inOrder && order[i] > order[i-1]
	}
	assert.False(t, inOrder, "ACKs should leave as handlers finish, not in NOTIFY order")
}

// TestInFlightBound: with handlers blocked, the agent stops after
// MaxInFlight NOTIFYs instead of reading (and buffering) the rest.
func TestInFlightBound(t *testing.T) {
	const limit = 8
	var running atomic.Int32
	release := make(chan struct{})
	a := agent.New(agent.WithMaxInFlight(limit), agent.WithTimeout(10*time.Second))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		running.Add(1)
		<-release
		return nil
	})
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	const total = 500
	go func() {
		for i := range total {
			if _, err := c.NC.Write(spoptest.NotifyFrame(uint64(i+1), 1, spoptest.Msg{Name: "m"})); err != nil {
				return
			}
		}
	}()
	require.Eventually(t, func() bool { return running.Load() == limit }, 5*time.Second, time.Millisecond)
	// Give the pipeline a chance to overshoot if it were going to.
	time.Sleep(100 * time.Millisecond)
	assert.EqualValues(t, limit, running.Load(), "more handlers started than the in-flight limit")
	close(release)
	for range total {
		c.ReadAck()
	}
	assert.EqualValues(t, total, running.Load())
}

func TestHandlerFailuresStillAck(t *testing.T) {
	a := agent.New(
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"),
		agent.WithTimeout(50*time.Millisecond),
		agent.WithLogger(zaptest.NewLogger(t)),
	)
	a.Message("ok", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	a.Message("fails", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "partial", true)
		return errors.New("backend down")
	})
	a.Message("panics", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "partial", true)
		panic("boom")
	})
	a.Message("slow", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		<-ctx.Done()
		return ctx.Err()
	})
	a.Message("late", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		time.Sleep(80 * time.Millisecond) // ignores ctx, returns past its 50 ms deadline
		act.SetBool(agent.ScopeTransaction, "partial", true)
		return nil
	})
	a.Message("badvar", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, string(make([]byte, 64)), true)
		return nil
	})
	a.Message("huge", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBytes(agent.ScopeTransaction, "big", make([]byte, 20000))
		return nil
	})
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	for i, tc := range []struct {
		msg     string
		code    int64
		partial bool
	}{
		{"ok", 0, false},
		{"fails", agent.ErrCodeHandler, true},
		{"panics", agent.ErrCodePanic, false},
		{"slow", agent.ErrCodeTimeout, false},
		{"late", agent.ErrCodeTimeout, false},
		{"badvar", agent.ErrCodeAction, false},
		{"huge", agent.ErrCodeTooLarge, false},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			c.Notify(uint64(i), 1, spoptest.Msg{Name: tc.msg})
			ack := c.ReadAck()
			require.Equal(t, uint64(i), ack.StreamID)
			v, ok := ack.Var("agent_error")
			if tc.code == 0 {
				require.False(t, ok)
				return
			}
			require.True(t, ok)
			code, _ := v.Value.Int()
			assert.Equal(t, tc.code, code)
			_, ok = ack.Var("partial")
			assert.Equal(t, tc.partial, ok)
		})
	}
}

func TestDisconnects(t *testing.T) {
	t.Run("HAPROXY-DISCONNECT", func(t *testing.T) {
		a := agent.New()
		c := spoptest.Dial(t, start(t, a))
		c.Hello("pipelining", 16380)
		c.Write(codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusNormal, "normal"))
		d := c.ReadDisconnect()
		assert.Equal(t, codec.StatusNormal, d.Status)
		c.ExpectClosed()
	})
	t.Run("peer gone before the reply", func(t *testing.T) {
		a := agent.New()
		c := spoptest.Dial(t, start(t, a))
		c.Hello("pipelining", 16380)
		c.Write(codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusTimeout, "a timeout occurred"))
		require.NoError(t, c.NC.Close())
		require.Eventually(t, func() bool { return a.Connections() == 0 }, 5*time.Second, time.Millisecond)
	})
	for _, cut := range []struct {
		name string
		data []byte
	}{
		{"EOF after HELLO", nil},
		{"EOF mid-length", []byte{0, 0}},
		{"EOF mid-frame", spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m"})[:9]},
	} {
		t.Run(cut.name, func(t *testing.T) {
			a := agent.New()
			a.Message("m", echo)
			c := spoptest.Dial(t, start(t, a))
			c.Hello("pipelining", 16380)
			if cut.data != nil {
				c.Write(cut.data)
			}
			require.NoError(t, c.NC.(*net.TCPConn).CloseWrite())
			if cut.data != nil {
				// Cut mid-frame: an I/O error, said before closing.
				assert.Equal(t, codec.StatusIO, c.ReadDisconnect().Status)
			}
			c.ExpectClosed()
			require.Eventually(t, func() bool { return a.Connections() == 0 }, 5*time.Second, time.Millisecond)
		})
	}
	t.Run("RST with NOTIFYs in flight", func(t *testing.T) {
		cancelled := make(chan struct{}, 4)
		var started sync.WaitGroup
		started.Add(4)
		a := agent.New(agent.WithTimeout(10 * time.Second))
		a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			started.Done()
			<-ctx.Done()
			cancelled <- struct{}{}
			return ctx.Err()
		})
		c := spoptest.Dial(t, start(t, a))
		c.Hello("pipelining", 16380)
		for i := range 4 {
			c.Notify(uint64(i), 1, spoptest.Msg{Name: "m"})
		}
		started.Wait()
		require.NoError(t, c.NC.(*net.TCPConn).SetLinger(0))
		require.NoError(t, c.NC.Close())
		for range 4 {
			select {
			case <-cancelled:
			case <-time.After(5 * time.Second):
				t.Fatal("a handler's context was not cancelled when its connection died")
			}
		}
		require.Eventually(t, func() bool { return a.Connections() == 0 }, 5*time.Second, time.Millisecond)
	})
}

// TestShutdownFlushesInFlight: Shutdown lets running handlers finish and
// sends their ACKs before AGENT-DISCONNECT status 0.
func TestShutdownFlushesInFlight(t *testing.T) {
	const n = 10
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	a := agent.New(agent.WithTimeout(10 * time.Second))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		started.Done()
		<-release
		act.SetBool(agent.ScopeTransaction, "done", true)
		return nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	c := spoptest.Dial(t, l.Addr().String())
	c.Hello("pipelining", 16380)
	for i := range n {
		c.Notify(uint64(i), 1, spoptest.Msg{Name: "m"})
	}
	started.Wait()
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- a.Shutdown(ctx)
	}()
	require.Eventually(t, func() bool {
		_, err := net.Dial("tcp", l.Addr().String())
		return err != nil
	}, 5*time.Second, time.Millisecond, "the listener should close at once")
	close(release)
	for range n {
		ack := c.ReadAck()
		_, ok := ack.Var("done")
		require.True(t, ok)
	}
	d := c.ReadDisconnect()
	assert.Equal(t, codec.StatusNormal, d.Status)
	c.ExpectClosed()
	require.NoError(t, <-shut)
	require.ErrorIs(t, <-served, agent.ErrAgentClosed)
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	a := agent.New()
	a.Message("m", echo)
	served := make(chan error, 1)
	go func() { served <- a.ListenAndServe("unix:" + path) }()
	var nc net.Conn
	require.Eventually(t, func() bool {
		var err error
		nc, err = net.Dial("unix", path)
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	c := &spoptest.Client{NC: nc}
	_ = c
	_, err := nc.Write(spoptest.HelloFrame("pipelining", 16380))
	require.NoError(t, err)
	buf := make([]byte, 256)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := nc.Read(buf)
	require.NoError(t, err)
	f, err := codec.DecodeFrame(buf[:n], codec.MaxFrameLen)
	require.NoError(t, err)
	require.Equal(t, codec.FrameAgentHello, f.Type)
	require.NoError(t, nc.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	require.ErrorIs(t, <-served, agent.ErrAgentClosed)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	_, err := fmt.Sscanf(s, "%x", &b)
	require.NoError(t, err)
	return b
}

// TestFrameAboveAnswerWithinOffer: HAProxy 3.1.0 may send frames up to its
// own offer even when the agent answered less; the agent reads them and
// answers, rather than disconnecting with status 3.
func TestFrameAboveAnswerWithinOffer(t *testing.T) {
	a := agent.New(agent.WithMaxFrameSize(16380))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		b, _ := m.Bytes("body")
		act.SetInt(agent.ScopeTransaction, "len", int64(len(b)))
		return nil
	})
	c := spoptest.Dial(t, start(t, a))
	h := c.Hello("pipelining", 65532)
	require.EqualValues(t, 16380, h.MaxFrameSize)
	c.Notify(1, 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("body", codec.Binary(make([]byte, 40000)))}})
	ack := c.ReadAck()
	v, ok := ack.Var("len")
	require.True(t, ok)
	n, _ := v.Value.Int()
	require.EqualValues(t, 40000, n)
}
