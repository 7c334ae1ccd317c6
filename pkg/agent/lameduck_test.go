package agent_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lameAgent serves an agent whose message "m" sets txn.ok, with opts, and
// returns it, its address, and Serve's result.
func lameAgent(t *testing.T, opts ...agent.Option) (*agent.Agent, string, chan error) {
	t.Helper()
	a := agent.New(opts...)
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	t.Cleanup(func() { _ = a.Close() })
	return a, l.Addr().String(), served
}

// notifyOK sends one NOTIFY on c and checks its ACK.
func notifyOK(t *testing.T, c *spoetest.Client) {
	t.Helper()
	ack, err := c.Notify(spoetest.NewMessage("m"))
	require.NoError(t, err)
	v, ok := ack.Bool(agent.ScopeTransaction, "ok")
	require.True(t, ok, "the ACK lost its action")
	require.True(t, v)
}

// TestLameDuck: during Shutdown's lame-duck period, health checks get an
// AGENT-DISCONNECT with StatusLameDuck, while a connection opened before
// and one opened during the period are both served; then the agent drains
// and stops listening.
func TestLameDuck(t *testing.T) {
	const period = 400 * time.Millisecond
	a, addr, served := lameAgent(t, agent.WithLameDuck(period))
	_, err := spoetest.Healthcheck(addr)
	require.NoError(t, err, "healthy before the shutdown")
	require.False(t, a.LameDuck())
	before, err := spoetest.Dial(addr)
	require.NoError(t, err)
	defer before.Close()
	notifyOK(t, before)

	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.Shutdown(context.Background()) }()
	require.Eventually(t, a.LameDuck, time.Second, time.Millisecond)

	_, err = spoetest.Healthcheck(addr)
	var de *spoetest.DisconnectError
	require.ErrorAs(t, err, &de, "a health check in the lame-duck period must fail")
	assert.Equal(t, agent.StatusLameDuck, de.Status)
	assert.Contains(t, de.Message, "lame duck")

	notifyOK(t, before) // existing connections are served
	during, err := spoetest.Dial(addr)
	require.NoError(t, err, "new connections are still accepted")
	defer during.Close()
	notifyOK(t, during)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) after %v, within the lame-duck period", err, time.Since(start))
	default:
	}

	require.NoError(t, <-done)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, period)
	assert.Less(t, took, period+2*time.Second)
	require.ErrorIs(t, <-served, agent.ErrAgentClosed)
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "the listener is closed after the drain")
}

// TestLameDuckSkipped: without a health check to fail, or with NoLameDuck,
// Shutdown drains at once.
func TestLameDuckSkipped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opt   agent.Option
		check bool
	}{
		{"no health check answered", agent.WithLameDuck(time.Minute), false},
		{"NoLameDuck", agent.WithLameDuck(agent.NoLameDuck), true},
		{"not set (Shutdown's default)", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []agent.Option
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			a, addr, served := lameAgent(t, opts...)
			if tc.check {
				_, err := spoetest.Healthcheck(addr)
				require.NoError(t, err)
			}
			start := time.Now()
			require.NoError(t, a.Shutdown(context.Background()))
			assert.Less(t, time.Since(start), 2*time.Second)
			assert.False(t, a.LameDuck())
			require.ErrorIs(t, <-served, agent.ErrAgentClosed)
		})
	}
}

// TestLameDuckBounded: the lame-duck period ends when Shutdown's context
// does, and at once when Close is called.
func TestLameDuckBounded(t *testing.T) {
	t.Run("ctx", func(t *testing.T) {
		a, addr, served := lameAgent(t, agent.WithLameDuck(time.Minute))
		_, err := spoetest.Healthcheck(addr)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = a.Shutdown(ctx)
		if err != nil {
			require.True(t, errors.Is(err, context.DeadlineExceeded), "Shutdown: %v", err)
		}
		assert.Less(t, time.Since(start), 2*time.Second, "the lame-duck period outlasted ctx")
		require.ErrorIs(t, <-served, agent.ErrAgentClosed)
	})
	t.Run("Close", func(t *testing.T) {
		a, addr, served := lameAgent(t, agent.WithLameDuck(time.Minute))
		_, err := spoetest.Healthcheck(addr)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- a.Shutdown(context.Background()) }()
		require.Eventually(t, a.LameDuck, time.Second, time.Millisecond)
		start := time.Now()
		require.NoError(t, a.Close())
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("Shutdown still in its lame-duck period after Close")
		}
		assert.Less(t, time.Since(start), 2*time.Second)
		require.ErrorIs(t, <-served, agent.ErrAgentClosed)
	})
}
