package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdleTimeoutOption: WithIdleTimeout ends a connection that sends
// nothing for that long with AGENT-DISCONNECT status 2 (timeout), and
// leaves alone one that keeps sending.
func TestIdleTimeoutOption(t *testing.T) {
	const idle = 150 * time.Millisecond
	a := agent.New(agent.WithIdleTimeout(idle))
	a.Message("m", echo)
	addr := start(t, a)

	busy := spoptest.Dial(t, addr)
	busy.Hello("pipelining", 16380)
	quiet := spoptest.Dial(t, addr)
	quiet.Hello("pipelining", 16380)
	s := time.Now()
	for sid := uint64(1); time.Since(s) < 3*idle; sid++ {
		busy.Notify(sid, 1, spoptest.Msg{Name: "m"})
		busy.ReadAck()
		time.Sleep(idle / 3)
	}
	d := quiet.ReadDisconnect()
	assert.Equal(t, codec.StatusTimeout, d.Status)
	quiet.ExpectClosed()
	busy.Notify(1000, 1, spoptest.Msg{Name: "m"})
	assert.Equal(t, uint64(1000), busy.ReadAck().StreamID, "a busy connection is not idle")
}

// TestWriteTimeoutOption: WithWriteTimeout ends a connection whose peer
// stops reading while the agent has ACKs to write, instead of pinning its
// writer (and the handlers' in-flight slots) forever.
func TestWriteTimeoutOption(t *testing.T) {
	a := agent.New(agent.WithWriteTimeout(100*time.Millisecond), agent.WithMaxInFlight(1<<16))
	pad := make([]byte, 8000)
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBytes(agent.ScopeTransaction, "pad", pad)
		return nil
	})
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	frame := spoptest.NotifyFrame(1, 1, spoptest.Msg{Name: "m"})
	var burst []byte
	for range 500 {
		burst = append(burst, frame...)
	}
	s := time.Now()
	// Write without ever reading until the agent gives up on us.
	for time.Since(s) < 10*time.Second && a.Connections() == 1 {
		_ = c.NC.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.NC.Write(burst)
	}
	require.Eventually(t, func() bool { return a.Connections() == 0 }, 10*time.Second, 10*time.Millisecond,
		"the connection of a peer that does not read was not closed")
	t.Logf("closed %v after the peer stopped reading", time.Since(s).Round(time.Millisecond))
}
