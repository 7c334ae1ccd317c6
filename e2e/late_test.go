package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// TestE2E_ErrorVarLateReturn: a handler that ignores its context, works past
// agent.WithTimeout and then returns nil must still be reported with error
// code 3: agent.WithErrorVar documents "3 it hit its deadline", and
// dispatch.ErrCodeTimeout "the handler returned after its deadline, or with
// a context error". The ACK still arrives before HAProxy's timeout
// processing, so HAProxy applies whatever it carries.
func TestE2E_ErrorVarLateReturn(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		const timeout = 200 * time.Millisecond
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-late", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				// Slow work that does not watch ctx: it ends 150 ms past the
				// deadline, then reports success.
				d, _ := ctx.Deadline()
				time.Sleep(time.Until(d) + 150*time.Millisecond)
				act.SetString(agent.ScopeTransaction, "before", "late")
				return nil
			})
		}, agent.WithErrorVar(agent.ScopeTransaction, "error"), agent.WithTimeout(timeout))
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-late",
			SPOE: `
spoe-message e2e-late
    args path=path
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "error=%[var(txn.e2e.error,ABSENT)]\nbefore=%[var(txn.e2e.before,ABSENT)]\nspoe_err=%[var(txn.e2e.spoe_err,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 1)
		start := time.Now()
		r := mustDo(t, cl, "GET", c.URL("/late"), nil, nil)
		took := time.Since(start)
		require.Equal(t, 200, r.Status, r.Body)
		require.GreaterOrEqual(t, took, timeout+150*time.Millisecond)
		require.Less(t, took, 2*time.Second, "the ACK arrived before HAProxy's timeout processing")
		require.Equal(t, "ABSENT", r.Vars()["spoe_err"])
		require.Equal(t, "ABSENT", r.Vars()["before"], "a late handler's actions are dropped as stale")
		require.Equal(t, "3", r.Vars()["error"],
			"a handler that returned %v after its %v deadline must be reported as ErrCodeTimeout (3); HAProxy saw:\n%s",
			took-timeout, timeout, r.Body)
	})
}
