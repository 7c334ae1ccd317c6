package spoetest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
)

// startServer serves a (after register adds its handlers) for one test.
func startServer(t *testing.T, register func(a *agent.Agent), opts ...agent.Option) *spoetest.Server {
	t.Helper()
	a := agent.New(opts...)
	if register != nil {
		register(a)
	}
	srv := spoetest.NewServer(a)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return srv
}

// echo sets txn.n to the message's argument n, and txn.engine to the
// engine-id it came from.
func echo(a *agent.Agent) {
	a.Message("echo", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		if n, ok := m.Int("n"); ok {
			act.SetInt(txn, "n", n)
		}
		act.SetString(txn, "engine", m.EngineID())
		return nil
	})
}

func echoMsg(n int) spoetest.Message {
	return spoetest.NewMessage("echo", spoetest.Int("n", int64(n)))
}

// TestClient_Styles: each style offers HAProxy's capabilities and numbers
// its NOTIFYs as that HAProxy does; the engine-id reaches the handler.
func TestClient_Styles(t *testing.T) {
	srv := startServer(t, echo)
	tests := []struct {
		style     spoetest.Style
		opts      []spoetest.Option
		wantCaps  codec.Capabilities
		wantIDs   []spoetest.ID
		wantEngID string // "" means a random UUID
	}{
		{spoetest.HAProxy32, nil, codec.CapPipelining | codec.CapFragmentation,
			[]spoetest.ID{{StreamID: 1, FrameID: 1}, {StreamID: 3, FrameID: 1}, {StreamID: 5, FrameID: 1}}, ""},
		{spoetest.HAProxy26, []spoetest.Option{spoetest.WithEngineID("e-26")}, codec.CapPipelining | codec.CapFragmentation,
			[]spoetest.ID{{StreamID: 0, FrameID: 1}, {StreamID: 2, FrameID: 1}, {StreamID: 4, FrameID: 1}}, "e-26"},
	}
	for _, tt := range tests {
		t.Run(tt.style.String(), func(t *testing.T) {
			c := spoetest.MustDial(t, srv.Addr, append(tt.opts, spoetest.WithStyle(tt.style))...)
			h := c.Hello()
			require.Equal(t, "2.0", h.Version)
			require.Equal(t, uint32(codec.DefaultMaxFrameSize), h.MaxFrameSize)
			require.Equal(t, tt.wantCaps, h.Capabilities)
			require.True(t, c.Client().Pipelining())
			for i, want := range tt.wantIDs {
				ack := c.Notify(echoMsg(i))
				require.Equal(t, want, ack.ID)
				n, ok := ack.Int(txn, "n")
				require.True(t, ok)
				require.Equal(t, int64(i), n)
				eng, _ := ack.String(txn, "engine")
				if tt.wantEngID != "" {
					require.Equal(t, tt.wantEngID, eng)
				} else {
					require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, eng)
				}
			}
		})
	}
}

// TestClient_Pipeline: NOTIFYs are in flight together (ten handlers wait
// for each other), and the ACKs come back matched to their messages.
func TestClient_Pipeline(t *testing.T) {
	const together = 10
	var mu sync.Mutex
	arrived, all := 0, make(chan struct{})
	srv := startServer(t, func(a *agent.Agent) {
		a.Message("echo", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			n, _ := m.Int("n")
			if n < together {
				mu.Lock()
				if arrived++; arrived == together {
					close(all)
				}
				mu.Unlock()
				select {
				case <-all:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			act.SetInt(txn, "n", n)
			return nil
		})
	}, agent.WithErrorVar(txn, "agent_error"), agent.WithTimeout(3*time.Second))
	for _, style := range []spoetest.Style{spoetest.HAProxy32, spoetest.HAProxy26} {
		t.Run(style.String(), func(t *testing.T) {
			mu.Lock()
			arrived, all = 0, make(chan struct{})
			mu.Unlock()
			c := spoetest.MustDial(t, srv.Addr, spoetest.WithStyle(style))
			msgs := make([]spoetest.Message, 3*spoetest.MaxInFlight+1)
			for i := range msgs {
				msgs[i] = echoMsg(i)
			}
			acks := c.Pipeline(msgs...)
			require.Len(t, acks, len(msgs))
			ids := map[spoetest.ID]bool{}
			for i, ack := range acks {
				require.Equal(t, map[string]any{"txn.n": int64(i)}, ack.Map(), "ACK %d", i)
				require.False(t, ids[ack.ID], "ids %v used twice", ack.ID)
				ids[ack.ID] = true
			}
		})
	}
}

// TestClient_Concurrent: goroutines share one Client, each getting its own
// ACKs.
func TestClient_Concurrent(t *testing.T) {
	srv := startServer(t, echo)
	c, err := srv.Client()
	require.NoError(t, err)
	defer c.Close()
	const goroutines, each = 8, 25
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := g*each + i
				ack, err := c.Notify(echoMsg(n))
				if err != nil {
					errs <- err
					return
				}
				if got, _ := ack.Int(txn, "n"); got != int64(n) {
					errs <- fmt.Errorf("NOTIFY %d got the ACK of %d", n, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// TestClient_ErrorVar: an agent with an error variable reports a failing
// handler in the ACK, and the connection lives on.
func TestClient_ErrorVar(t *testing.T) {
	srv := startServer(t, func(a *agent.Agent) {
		a.Message("fail", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			act.SetBool(txn, "partial", true)
			switch how, _ := m.String("how"); how {
			case "error":
				return errors.New("failed")
			case "panic":
				panic("failed")
			case "slow":
				<-ctx.Done()
				return ctx.Err()
			case "bad action":
				act.SetBool(txn, "", true)
			}
			return nil
		})
	}, agent.WithErrorVar(txn, "agent_error"), agent.WithTimeout(100*time.Millisecond))
	c := spoetest.MustDial(t, srv.Addr)
	tests := []struct {
		how  string
		want map[string]any
	}{
		{"none", map[string]any{"txn.partial": true}},
		{"error", map[string]any{"txn.partial": true, "txn.agent_error": int64(agent.ErrCodeHandler)}},
		{"panic", map[string]any{"txn.agent_error": int64(agent.ErrCodePanic)}},
		{"slow", map[string]any{"txn.agent_error": int64(agent.ErrCodeTimeout)}},
		{"bad action", map[string]any{"txn.partial": true, "txn.agent_error": int64(agent.ErrCodeAction)}},
	}
	for _, tt := range tests {
		t.Run(tt.how, func(t *testing.T) {
			ack := c.Notify(spoetest.NewMessage("fail", spoetest.Str("how", tt.how)))
			require.Equal(t, tt.want, ack.Map())
		})
	}
}

// TestClient_InProcessMatchesWire: for a real handler, Run and a NOTIFY
// through a served agent give the same variables.
func TestClient_InProcessMatchesWire(t *testing.T) {
	srv := startServer(t, func(a *agent.Agent) { a.Message("check-request", checkRequest) })
	c := spoetest.MustDial(t, srv.Addr)
	msgs := []spoetest.Message{
		spoetest.NewMessage("check-request"),
		spoetest.NewMessage("check-request", spoetest.IP("ip", "192.0.2.1"), spoetest.Str("path", "/x"), spoetest.Null("ua")),
		spoetest.NewMessage("check-request", spoetest.IP("ip", "2001:db8::1"), spoetest.Str("path", ""), spoetest.Str("ua", "curl")),
		spoetest.NewMessage("check-request", spoetest.Str("ip", "192.0.2.1"), spoetest.Bin("path", []byte("/bin"))),
	}
	for i, m := range msgs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			require.Equal(t, spoetest.Run(t, checkRequest, m).Map(), c.Notify(m).Map())
		})
	}
}

// TestClient_Messages: a NOTIFY with several messages (one without a
// handler) and an empty NOTIFY, as HAProxy 3.2.0 sends, are acknowledged.
func TestClient_Messages(t *testing.T) {
	srv := startServer(t, func(a *agent.Agent) {
		a.Message("one", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			act.SetInt(txn, "one", 1)
			return nil
		})
		a.Message("two", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			act.SetInt(agent.ScopeRequest, "two", 2)
			return nil
		})
	})
	c := spoetest.MustDial(t, srv.Addr)
	ack := c.Notify(spoetest.NewMessage("one"), spoetest.NewMessage("unknown"), spoetest.NewMessage("two"))
	require.Equal(t, map[string]any{"txn.one": int64(1), "req.two": int64(2)}, ack.Map())
	require.Empty(t, c.Notify().Actions)
}

// TestClient_Fragmentation: a NOTIFY above the max-frame-size is fragmented
// in the HAProxy 2.6 style when the agent announced fragmentation, and
// refused otherwise, as HAProxy fails the event.
func TestClient_Fragmentation(t *testing.T) {
	body := []byte(strings.Repeat("0123456789", 200))
	size := func(a *agent.Agent) {
		a.Message("size", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			b, _ := m.Bytes("body")
			act.SetInt(txn, "len", int64(len(b)))
			act.SetBool(txn, "intact", string(b) == string(body))
			return nil
		})
	}
	withFrag := startServer(t, size)
	withoutFrag := startServer(t, size, agent.WithFragmentation(false))
	tests := []struct {
		name    string
		addr    string
		style   spoetest.Style
		wantErr error
	}{
		{"2.6, fragmentation", withFrag.Addr, spoetest.HAProxy26, nil},
		{"2.6, no fragmentation", withoutFrag.Addr, spoetest.HAProxy26, codec.ErrFrameTooBig},
		{"3.2 never fragments", withFrag.Addr, spoetest.HAProxy32, codec.ErrFrameTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := spoetest.MustDial(t, tt.addr, spoetest.WithStyle(tt.style), spoetest.WithMaxFrameSize(codec.MinMaxFrameSize))
			require.Equal(t, uint32(codec.MinMaxFrameSize), c.Hello().MaxFrameSize)
			ack, err := c.Client().Notify(spoetest.NewMessage("size", spoetest.Bin("body", body)))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				// The connection still works: nothing was sent.
				ack = c.Notify(spoetest.NewMessage("size", spoetest.Bin("body", body[:10])))
				require.Equal(t, map[string]any{"txn.len": int64(10), "txn.intact": false}, ack.Map())
				return
			}
			require.NoError(t, err)
			require.Equal(t, map[string]any{"txn.len": int64(len(body)), "txn.intact": true}, ack.Map())
		})
	}
}

// TestClient_NoPipelining: without pipelining one NOTIFY is in flight at a
// time; Pipeline then sends them one by one.
func TestClient_NoPipelining(t *testing.T) {
	srv := startServer(t, echo)
	c := spoetest.MustDial(t, srv.Addr, spoetest.WithCapabilities(""))
	require.False(t, c.Client().Pipelining())
	id := c.Send(echoMsg(1))
	_, err := c.Client().Send(echoMsg(2))
	require.ErrorContains(t, err, "one NOTIFY at a time")
	require.Equal(t, id, c.Recv().ID)
	acks := c.Pipeline(echoMsg(3), echoMsg(4), echoMsg(5))
	for i, ack := range acks {
		n, _ := ack.Int(txn, "n")
		require.Equal(t, int64(i+3), n)
	}
}

// TestClient_Disconnect: the HAProxy 2.6 way of closing gets the agent's
// AGENT-DISCONNECT status 0; afterwards the Client says it is closed.
func TestClient_Disconnect(t *testing.T) {
	srv := startServer(t, echo)
	c, err := srv.Client(spoetest.WithStyle(spoetest.HAProxy26))
	require.NoError(t, err)
	require.NoError(t, c.Disconnect())
	_, err = c.Notify(echoMsg(1))
	require.ErrorIs(t, err, spoetest.ErrClosed)
	require.NoError(t, c.Close())
}

// TestServer_Shutdown: an agent shutting down sends AGENT-DISCONNECT 0,
// which the Client returns as a *DisconnectError.
func TestServer_Shutdown(t *testing.T) {
	a := agent.New()
	echo(a)
	srv := spoetest.NewServer(a)
	c, err := srv.Client()
	require.NoError(t, err)
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	_, err = c.Recv()
	var de *spoetest.DisconnectError
	require.ErrorAs(t, err, &de)
	require.Equal(t, codec.StatusNormal, de.Status)
	_, err = c.Notify(echoMsg(1))
	require.ErrorAs(t, err, &de, "the failure is sticky")
	require.NoError(t, c.Close())
	require.NoError(t, <-closed)
	require.NoError(t, srv.Close(), "Close twice")
}

// TestServer_BadAgent: an agent that cannot start says why.
func TestServer_BadAgent(t *testing.T) {
	srv := spoetest.NewServer(agent.New(agent.WithMaxFrameSize(100)))
	_, err := srv.Client()
	require.ErrorContains(t, err, "max frame size 100 is below 256")
	require.ErrorContains(t, srv.Close(), "max frame size 100 is below 256")
}

func TestHealthcheck(t *testing.T) {
	srv := startServer(t, nil, agent.WithMaxFrameSize(1000))
	h, err := spoetest.Healthcheck(srv.Addr)
	require.NoError(t, err)
	require.Equal(t, spoetest.Hello{Version: "2.0", MaxFrameSize: 1000, Capabilities: h.Capabilities}, h)
	h, err = spoetest.Healthcheck(srv.Addr, spoetest.WithMaxFrameSize(512))
	require.NoError(t, err)
	require.Equal(t, uint32(512), h.MaxFrameSize)
}

// readFrame reads one frame (prefix and all) from the client.
func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

// fakeAgent serves one connection on a 127.0.0.1 port: it reads the
// client's HELLO, writes hello (unless nil), then runs script (unless nil)
// and closes. Its goroutine ends before the test does.
func fakeAgent(t *testing.T, hello []byte, script func(nc net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := readFrame(nc); err != nil {
			return
		}
		if hello != nil {
			_, _ = nc.Write(hello)
		}
		if script != nil {
			script(nc)
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return l.Addr().String()
}

// helloFrame is an AGENT-HELLO with the given items and header.
func helloFrame(h codec.Header, items ...any) []byte {
	var p []byte
	for i := 0; i+1 < len(items); i += 2 {
		p = codec.AppendKV(p, items[i].(string), items[i+1].(codec.Value))
	}
	return codec.AppendFrame(nil, h, p)
}

var agentHello = codec.Header{Type: codec.FrameAgentHello, Flags: codec.FlagFin}

// TestHandshakeErrors: Dial and Healthcheck refuse an AGENT-HELLO that
// HAProxy would refuse, and report the agent's failures cleanly.
func TestHandshakeErrors(t *testing.T) {
	good := []any{"version", codec.String("2.0"), "max-frame-size", codec.Uint32(16380), "capabilities", codec.String("")}
	tests := []struct {
		name    string
		hello   []byte
		wantErr func(t *testing.T, err error)
	}{
		{"no capabilities", helloFrame(agentHello, good[:4]...), isErr(codec.ErrNoCapabilities)},
		{"no version", helloFrame(agentHello, good[2:]...), isErr(codec.ErrNoVersion)},
		{"version 2.1", helloFrame(agentHello, "version", codec.String("2.1"), good[2], good[3], good[4], good[5]), isErr(codec.ErrUnsupportedVersion)},
		{"above the offer", codec.AppendAgentHello(nil, 16381, 0), isErr(codec.ErrBadFrameSize)},
		{"ids not 0", helloFrame(codec.Header{Type: codec.FrameAgentHello, Flags: codec.FlagFin, StreamID: 1}, good...), isErr(codec.ErrBadIDs)},
		{"flags not FIN", helloFrame(codec.Header{Type: codec.FrameAgentHello, Flags: codec.FlagFin | 4}, good...), isErr(codec.ErrBadIDs)},
		{"an ACK", codec.AppendAck(nil, 0, 0, nil), isErr(codec.ErrUnexpectedFrame)},
		{"AGENT-DISCONNECT", codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusBadVersion, "no"), isDisconnect(codec.StatusBadVersion, "no")},
		{"closed", nil, isErr(io.EOF)},
		{"frame too big", []byte{0, 0, 0x40, 0, 101}, isErr(codec.ErrFrameTooBig)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := spoetest.Dial(fakeAgent(t, tt.hello, nil))
			tt.wantErr(t, err)
			_, err = spoetest.Healthcheck(fakeAgent(t, tt.hello, nil))
			tt.wantErr(t, err)
		})
	}
	t.Run("silence", func(t *testing.T) {
		quiet := make(chan struct{})
		defer close(quiet)
		addr := fakeAgent(t, nil, func(net.Conn) { <-quiet })
		start := time.Now()
		_, err := spoetest.Dial(addr, spoetest.WithTimeout(100*time.Millisecond))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Less(t, time.Since(start), 2*time.Second)
	})
	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		_, err = spoetest.Dial(addr)
		require.Error(t, err)
	})
}

func isErr(want error) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		require.ErrorIs(t, err, want)
	}
}

func isDisconnect(status codec.Status, msg string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var de *spoetest.DisconnectError
		require.ErrorAs(t, err, &de)
		require.Equal(t, spoetest.DisconnectError{Status: status, Message: msg}, *de)
	}
}

// TestAckErrors: a Client refuses an ACK that HAProxy would refuse or
// misread, and the first failure sticks.
func TestAckErrors(t *testing.T) {
	const mfs = 300
	hello := codec.AppendAgentHello(nil, mfs, codec.CapPipelining)
	// answer reads the NOTIFY and writes frame(sid, fid) in reply.
	answer := func(frame func(sid, fid uint64) []byte) func(nc net.Conn) {
		return func(nc net.Conn) {
			b, err := readFrame(nc)
			if err != nil {
				return
			}
			f, err := codec.ParseFrame(b)
			if err != nil {
				return
			}
			_, _ = nc.Write(frame(f.StreamID, f.FrameID))
			_, _ = readFrame(nc) // until the client closes
		}
	}
	ackOf := func(length int) func(sid, fid uint64) []byte {
		return func(sid, fid uint64) []byte {
			// One set-var of a BINARY whose size makes LENGTH exactly length.
			act, _ := codec.AppendSetVar(nil, txn, "v", codec.Binary(nil))
			hdr := 1 + 4 + codec.VarintLen(sid) + codec.VarintLen(fid)
			pad := length - hdr - len(act)
			act, _ = codec.AppendSetVar(nil, txn, "v", codec.Binary(make([]byte, pad-1)))
			return codec.AppendAck(nil, sid, fid, act)
		}
	}
	tests := []struct {
		name    string
		style   spoetest.Style
		reply   func(sid, fid uint64) []byte
		wantErr func(t *testing.T, err error)
	}{
		{"ids of no NOTIFY", spoetest.HAProxy32, func(sid, fid uint64) []byte { return codec.AppendAck(nil, sid+2, fid, nil) }, isErr(codec.ErrUnexpectedFrame)},
		{"no FIN", spoetest.HAProxy32, func(sid, fid uint64) []byte {
			return codec.AppendFrame(nil, codec.Header{Type: codec.FrameAck, StreamID: sid, FrameID: fid}, nil)
		}, isErr(codec.ErrFragmentation)},
		{"another frame type", spoetest.HAProxy32, func(sid, fid uint64) []byte { return codec.AppendAgentHello(nil, mfs, 0) }, isErr(codec.ErrUnexpectedFrame)},
		{"malformed actions", spoetest.HAProxy32, func(sid, fid uint64) []byte { return codec.AppendAck(nil, sid, fid, []byte{1, 3}) }, isErr(codec.ErrTruncated)},
		{"AGENT-DISCONNECT", spoetest.HAProxy32, func(sid, fid uint64) []byte {
			return codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusResource, "busy")
		}, isDisconnect(codec.StatusResource, "busy")},
		{"LENGTH = max-frame-size on 3.2", spoetest.HAProxy32, ackOf(mfs), isErr(codec.ErrFrameTooBig)},
		{"LENGTH = max-frame-size - 1 on 3.2", spoetest.HAProxy32, ackOf(mfs - 1), nil},
		{"LENGTH = max-frame-size on 2.6", spoetest.HAProxy26, ackOf(mfs), nil},
		{"LENGTH > max-frame-size on 2.6", spoetest.HAProxy26, ackOf(mfs + 1), isErr(codec.ErrFrameTooBig)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := spoetest.Dial(fakeAgent(t, hello, answer(tt.reply)), spoetest.WithStyle(tt.style))
			require.NoError(t, err)
			defer c.Close()
			ack, err := c.Notify(echoMsg(1))
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.True(t, ack.Has(txn, "v"))
				return
			}
			tt.wantErr(t, err)
			_, again := c.Notify(echoMsg(2))
			require.Equal(t, err, again, "the first failure sticks")
		})
	}
	t.Run("silence", func(t *testing.T) {
		quiet := make(chan struct{})
		defer close(quiet)
		c, err := spoetest.Dial(fakeAgent(t, hello, func(net.Conn) { <-quiet }), spoetest.WithTimeout(100*time.Millisecond))
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Notify(echoMsg(1))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

// TestNewClient: NewClient makes the handshake on a connection the caller
// dialed (here a unix socket, which Dial does not do), and closes it when
// the handshake fails.
func TestNewClient(t *testing.T) {
	a := agent.New()
	echo(a)
	sock := fmt.Sprintf("%s/a.sock", t.TempDir())
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	t.Cleanup(func() {
		require.NoError(t, a.Close())
		require.ErrorIs(t, <-served, agent.ErrAgentClosed)
	})

	nc, err := net.Dial("unix", sock)
	require.NoError(t, err)
	c, err := spoetest.NewClient(nc, spoetest.WithStyle(spoetest.HAProxy26), spoetest.WithTimeout(2*time.Second))
	require.NoError(t, err)
	require.Equal(t, "2.0", c.Hello().Version)
	ack, err := c.Notify(echoMsg(7))
	require.NoError(t, err)
	require.Equal(t, spoetest.ID{StreamID: 0, FrameID: 1}, ack.ID, "the HAProxy 2.6 style numbers from 0")
	n, _ := ack.Int(txn, "n")
	require.Equal(t, int64(7), n)
	require.NoError(t, c.Close())

	// A peer that answers garbage: the handshake fails and nc is closed.
	p1, p2 := net.Pipe()
	go func() {
		var n [4]byte // read the whole HELLO: a pipe has no buffer
		_, _ = io.ReadFull(p2, n[:])
		_, _ = io.CopyN(io.Discard, p2, int64(binary.BigEndian.Uint32(n[:])))
		_, _ = p2.Write([]byte{0, 0, 0, 1, 0})
	}()
	_, err = spoetest.NewClient(p1, spoetest.WithTimeout(time.Second))
	require.ErrorIs(t, err, codec.ErrFrameTooSmall)
	_, err = p1.Write([]byte{0})
	require.ErrorIs(t, err, io.ErrClosedPipe, "NewClient closed the connection")
	_ = p2.Close()
}
