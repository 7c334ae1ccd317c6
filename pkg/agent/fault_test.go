package agent_test

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goroutines counts the goroutines that are not idle workers of the handler
// pool (those stay up to ten seconds after a burst, by design), and returns
// their stacks.
func goroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var kept []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(g), []byte("goroutine ")) && !bytes.Contains(g, []byte("panjf2000/ants")) {
			n++
			kept = append(kept, string(g))
		}
	}
	return n, strings.Join(kept, "\n\n")
}

// waitGoroutines waits until the goroutine count is back to at most n. (It
// polls by itself: testify's Eventually runs its condition in a goroutine
// of its own, which would be counted.)
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, last := goroutines()
		if k <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines did not return to their idle level: %d, want at most %d; they are:\n%s", k, n, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPanicOnEveryCall: the process survives and every NOTIFY is answered.
func TestPanicOnEveryCall(t *testing.T) {
	// A deadline far off: under -race on a loaded machine 1000 panics
	// (each logged with its stack) can queue past the default 200 ms, and
	// this test is about panics, not deadlines.
	a := agent.New(agent.WithErrorVar(agent.ScopeTransaction, "agent_error"), agent.WithMaxInFlight(256),
		agent.WithTimeout(10*time.Second))
	a.Message("m", func(context.Context, *agent.Message, *agent.Actions) error { panic("always") })
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	const n = 1000
	go func() {
		for i := range n {
			c.Notify(uint64(i), 1, spoptest.Msg{Name: "m"})
		}
	}()
	for range n {
		ack := c.ReadAck()
		v, ok := ack.Var("agent_error")
		require.True(t, ok)
		code, _ := v.Value.Int()
		require.EqualValues(t, agent.ErrCodePanic, code)
	}
}

// TestPeerClosesWithNotifiesInFlight: contexts are cancelled, and every read
// buffer and goroutine comes back.
func TestPeerClosesWithNotifiesInFlight(t *testing.T) {
	base, _ := goroutines()
	var running, cancelled atomic.Int32
	a := agent.New(agent.WithTimeout(10*time.Second), agent.WithMaxInFlight(64))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		running.Add(1)
		<-ctx.Done()
		cancelled.Add(1)
		return ctx.Err()
	})
	addr := start(t, a)
	for round := range 20 {
		c := spoptest.Dial(t, addr)
		c.Hello("pipelining", 16380)
		for i := range 40 {
			c.Notify(uint64(i), 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("pad", codec.Binary(make([]byte, 300)))}})
		}
		want := int32(40 * (round + 1))
		require.Eventually(t, func() bool { return running.Load() == want }, 5*time.Second, time.Millisecond)
		if round%2 == 0 {
			require.NoError(t, c.NC.(*net.TCPConn).SetLinger(0)) // RST
		}
		require.NoError(t, c.NC.Close())
		require.Eventually(t, func() bool { return cancelled.Load() == want }, 5*time.Second, time.Millisecond)
	}
	require.Eventually(t, func() bool { return a.Connections() == 0 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return agent.ReadBuffersOutstanding(a) == 0 }, 5*time.Second, time.Millisecond,
		"read buffers leaked: %d", agent.ReadBuffersOutstanding(a))
	waitGoroutines(t, base+1) // the agent's accept loop
}

// TestSlowloris: a peer sending one byte at a time neither holds a worker
// nor grows memory, and a HELLO that never completes meets the deadline.
func TestSlowloris(t *testing.T) {
	var calls atomic.Int32
	a := agent.New(agent.WithHelloTimeout(300 * time.Millisecond))
	a.Message("m", func(context.Context, *agent.Message, *agent.Actions) error { calls.Add(1); return nil })
	addr := start(t, a)

	t.Run("HELLO deadline", func(t *testing.T) {
		c := spoptest.Dial(t, addr)
		hello := spoptest.HelloFrame("pipelining", 16380)
		start := time.Now()
		for _, b := range hello[:len(hello)-1] {
			if _, err := c.NC.Write([]byte{b}); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
			if time.Since(start) > 2*time.Second {
				break
			}
		}
		assert.Equal(t, codec.StatusTimeout, c.ReadDisconnect().Status)
		c.ExpectClosed()
		assert.Less(t, time.Since(start), 2*time.Second)
	})
	t.Run("NOTIFY trickle after HELLO", func(t *testing.T) {
		c := spoptest.Dial(t, addr)
		c.Hello("pipelining", 16380)
		frame := spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("x", codec.String("value"))}})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, b := range frame[:len(frame)-1] {
			c.Write([]byte{b})
			time.Sleep(5 * time.Millisecond)
		}
		runtime.ReadMemStats(&after)
		assert.Zero(t, calls.Load(), "a worker ran before the frame was whole")
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20))
		c.Write(frame[len(frame)-1:])
		assert.Equal(t, uint64(1), c.ReadAck().StreamID)
		assert.EqualValues(t, 1, calls.Load())
	})
}

// TestReconnectStorm: 2,000 connect/HELLO/close cycles, as HAProxy 2.6 does
// after a rejected HELLO, leak nothing and do not slow a live connection.
func TestReconnectStorm(t *testing.T) {
	base, _ := goroutines()
	a := agent.New()
	a.Message("m", echo)
	addr := start(t, a)
	live := spoptest.Dial(t, addr)
	live.Hello("pipelining", 16380)
	rtt := func(n int) time.Duration {
		ds := make([]time.Duration, n)
		for i := range ds {
			s := time.Now()
			live.Notify(uint64(i), 1, spoptest.Msg{Name: "m"})
			live.ReadAck()
			ds[i] = time.Since(s)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[n/2]
	}
	quiet := rtt(200)

	const cycles = 2000
	var wg sync.WaitGroup
	var failed atomic.Int32
	storm := make(chan struct{})
	startStorm := time.Now()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hello := spoptest.HelloFrame("pipelining,async", 16380)
			disc := codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusFragNotSupported, "fragmentation not supported")
			buf := make([]byte, 512)
			for i := w; i < cycles; i += 4 {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = nc.Write(hello)
				if err == nil {
					_, err = nc.Read(buf) // the AGENT-HELLO
				}
				if err == nil && i%2 == 0 {
					_, _ = nc.Write(disc)
				}
				if err != nil {
					failed.Add(1)
				}
				_ = nc.Close()
			}
		}()
	}
	go func() { wg.Wait(); close(storm) }()
	during := rtt(200)
	<-storm
	took := time.Since(startStorm)
	t.Logf("%d cycles in %v; live round trip p50 %v quiet, %v during the storm", cycles, took, quiet, during)
	assert.Zero(t, failed.Load())
	assert.Less(t, during, quiet*20+5*time.Millisecond, "the live connection slowed down")
	require.Eventually(t, func() bool { return a.Connections() == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, live.NC.Close())
	require.Eventually(t, func() bool { return a.Connections() == 0 }, 10*time.Second, time.Millisecond)
	assert.Zero(t, agent.ReadBuffersOutstanding(a))
	waitGoroutines(t, base+1)
}

// TestShutdownRacesNewConnections: connections keep arriving while the agent
// shuts down; nothing panics or hangs and every goroutine ends.
func TestShutdownRacesNewConnections(t *testing.T) {
	base, _ := goroutines()
	a := agent.New()
	a.Message("m", echo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hello := spoptest.HelloFrame("pipelining", 16380)
			notify := spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m"})
			buf := make([]byte, 256)
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					continue
				}
				_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = nc.Write(append(append([]byte{}, hello...), notify...))
				_, _ = nc.Read(buf)
				_ = nc.Close()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the dialers get going
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	require.ErrorIs(t, <-served, agent.ErrAgentClosed)
	close(stop)
	wg.Wait()
	assert.Zero(t, a.Connections())
	waitGoroutines(t, base+2)
}

func TestMaxConnections(t *testing.T) {
	a := agent.New(agent.WithMaxConnections(2))
	a.Message("m", echo)
	addr := start(t, a)
	c1 := spoptest.Dial(t, addr)
	c1.Hello("pipelining", 16380)
	c2 := spoptest.Dial(t, addr)
	c2.Hello("pipelining", 16380)
	c3 := spoptest.Dial(t, addr)
	c3.ExpectClosed() // closed at once, before any frame
	require.NoError(t, c1.NC.Close())
	require.Eventually(t, func() bool { return a.Connections() == 1 }, 5*time.Second, time.Millisecond)
	c4 := spoptest.Dial(t, addr)
	c4.Hello("pipelining", 16380)
}

// TestBlockedHandlersReleaseWorkers: handlers that block until their
// context ends hold their worker only until the per-NOTIFY deadline; with a
// pool of 4 workers, 40 such NOTIFYs are all answered (with the error
// variable) in about ten deadlines, and the connection stays usable.
func TestBlockedHandlersReleaseWorkers(t *testing.T) {
	const timeout = 50 * time.Millisecond
	a := agent.New(agent.WithWorkers(4), agent.WithTimeout(timeout), agent.WithMaxInFlight(64),
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"))
	a.Message("block", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		<-ctx.Done() // "forever", as far as the handler is concerned
		return ctx.Err()
	})
	a.Message("m", echo)
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	s := time.Now()
	for i := range 40 {
		c.Notify(uint64(i), 1, spoptest.Msg{Name: "block"})
	}
	for range 40 {
		ack := c.ReadAck()
		v, ok := ack.Var("agent_error")
		require.True(t, ok)
		code, _ := v.Value.Int()
		require.EqualValues(t, agent.ErrCodeTimeout, code)
	}
	took := time.Since(s)
	t.Logf("40 blocked NOTIFYs on 4 workers answered in %v", took)
	assert.Less(t, took, 40*timeout, "workers were not released at the deadline")
	c.Notify(100, 1, spoptest.Msg{Name: "m"})
	assert.Equal(t, uint64(100), c.ReadAck().StreamID)
}
