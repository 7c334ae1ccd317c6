package main

import (
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func TestChecker(t *testing.T) {
	l, err := parse("192.0.2.0/24 2001:db8::/32")
	require.NoError(t, err)
	c := newChecker(l)
	tests := []struct {
		name     string
		args     []agent.Arg
		want     map[string]any
		wantCode int
	}{
		{"blocked IPv4", []agent.Arg{spoetest.IP("ip", "192.0.2.77")}, map[string]any{"txn.blocked": true}, 0},
		{"blocked IPv6", []agent.Arg{spoetest.IP("ip", "2001:db8:1::1")}, map[string]any{"txn.blocked": true}, 0},
		{"allowed IPv4", []agent.Arg{spoetest.IP("ip", "198.51.100.1")}, map[string]any{"txn.blocked": false}, 0},
		{"allowed IPv6", []agent.Arg{spoetest.IP("ip", "2001:db9::1")}, map[string]any{"txn.blocked": false}, 0},
		{"no ip", nil, map[string]any{}, agent.ErrCodeHandler},
		{"ip as a string", []agent.Arg{spoetest.Str("ip", "192.0.2.77")}, map[string]any{}, agent.ErrCodeHandler},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := spoetest.Run(t, c.HandleMessage, spoetest.NewMessage("check-ip", tt.args...))
			require.Equal(t, tt.want, res.Map())
			require.Equal(t, tt.wantCode, res.Code())
		})
	}
}

// TestAgent: the agent, served in process, answers with its error variable
// when HAProxy sends no address, and follows a reloaded list.
func TestAgent(t *testing.T) {
	l, err := parse("192.0.2.0/24")
	require.NoError(t, err)
	c := newChecker(l)
	srv := spoetest.NewServer(newAgent(zap.NewNop(), c))
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	cl := spoetest.MustDial(t, srv.Addr)

	msg := spoetest.NewMessage("check-ip", spoetest.IP("ip", "192.0.2.1"))
	require.Equal(t, map[string]any{"txn.blocked": true}, cl.Notify(msg).Map())
	require.Equal(t, map[string]any{"txn.agent_error": int64(agent.ErrCodeHandler)}, cl.Notify(spoetest.NewMessage("check-ip")).Map())

	l, err = parse("198.51.100.0/24")
	require.NoError(t, err)
	c.Store(l)
	require.Equal(t, map[string]any{"txn.blocked": false}, cl.Notify(msg).Map())
}
