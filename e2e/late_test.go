package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/stretchr/testify/require"
)

// ackCounter counts the ACK frames an agent queues for sending.
type ackCounter struct {
	observe.Nop
	acks atomic.Int64
}

func (o *ackCounter) FrameOut(t codec.FrameType, _ int) {
	if t == codec.FrameAck {
		o.acks.Add(1)
	}
}

// TestE2E_LateHandlerAnsweredAtDeadline: a handler that ignores its context
// and works past agent.WithTimeout gets its NOTIFY answered at the deadline,
// with agent.ErrCodeTimeout (1003) and none of its actions, long before it returns; when it
// does return, nothing more is sent.
func TestE2E_LateHandlerAnsweredAtDeadline(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		const timeout = 200 * time.Millisecond
		var obs ackCounter
		returned := make(chan struct{})
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-late", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				defer close(returned)
				// Slow work that does not watch ctx: it ends 300 ms past
				// the deadline, then reports success.
				d, _ := ctx.Deadline()
				time.Sleep(time.Until(d) + 300*time.Millisecond)
				act.SetString(agent.ScopeTransaction, "before", "late")
				return nil
			})
		}, agent.WithErrorVar(agent.ScopeTransaction, "agent_error"), agent.WithTimeout(timeout), agent.WithObserver(&obs))
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-late",
			SPOE: `
spoe-message e2e-late
    args path=path
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "agent_error=%[var(txn.e2e.agent_error,ABSENT)]\nbefore=%[var(txn.e2e.before,ABSENT)]\nspoe_error=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 1)
		start := time.Now()
		r := mustDo(t, cl, "GET", c.URL("/late"), nil, nil)
		took := time.Since(start)
		require.Equal(t, 200, r.Status, r.Body)
		require.GreaterOrEqual(t, took, timeout)
		require.Less(t, took, timeout+250*time.Millisecond, "answered at the deadline, not when the handler returned")
		require.Equal(t, "ABSENT", r.Vars()["spoe_error"])
		require.Equal(t, "ABSENT", r.Vars()["before"], "a late handler's actions are dropped")
		require.Equal(t, fmt.Sprint(agent.ErrCodeTimeout), r.Vars()["agent_error"], "HAProxy saw:\n%s", r.Body)
		<-returned
		time.Sleep(100 * time.Millisecond)
		require.Equal(t, int64(1), obs.acks.Load(), "the handler's late result was sent as a second ACK")
	})
}

// TestE2E_LateHandlerDoesNotAnswerTheNextEvent guards spop.md Appendix A:
// on HAProxy 2.6/3.0 an event that failed on timeout leaves its stream's
// frame-id unchanged, so the next event of the stream (here the response
// event, with "option continue-on-error") has the same stream-id and
// frame-id, and a late ACK for the first would be taken as the second's
// answer. The request handler runs past HAProxy's own "timeout
// processing"; the agent answers it at its deadline (below timeout
// processing) and never late, so the response event gets its own answer.
// With the earlier rule (ACK when the handler returns), run against 2.6, 3.0
// and 3.2, the response event lost its answer on all three (X-Resp ABSENT,
// X-Agent-Error 3 from the late ACK, X-Spoe-Error 1 from HAProxy's timeout).
func TestE2E_LateHandlerDoesNotAnswerTheNextEvent(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		const (
			timeout    = 1800 * time.Millisecond // below timeout processing 2s
			reqTakes   = 2500 * time.Millisecond // past timeout processing
			respTakes  = time.Second             // the late ACK would come in its wait
			processing = "2s"
		)
		var obs ackCounter
		reqDone := make(chan struct{})
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-req", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				defer close(reqDone)
				time.Sleep(reqTakes) // ignores ctx
				act.SetString(agent.ScopeTransaction, "req", "late")
				return nil
			})
			a.Message("e2e-resp", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				time.Sleep(respTakes)
				act.SetString(agent.ScopeTransaction, "resp", "ok")
				return nil
			})
		}, agent.WithErrorVar(agent.ScopeTransaction, "agent_error"), agent.WithTimeout(timeout), agent.WithObserver(&obs))
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages:   "e2e-req e2e-resp",
			Processing: processing,
			AgentLines: "    option continue-on-error",
			SPOE: `
spoe-message e2e-req
    args path=path
    event on-frontend-http-request

spoe-message e2e-resp
    args status=status
    event on-http-response
`,
			Frontend: `
    http-response set-header X-Agent-Error "%[var(txn.e2e.agent_error,ABSENT)]"
    http-response set-header X-Spoe-Error "%[var(txn.e2e.spoe_error,ABSENT)]"
    http-response set-header X-Req "%[var(txn.e2e.req,ABSENT)]"
    http-response set-header X-Resp "%[var(txn.e2e.resp,ABSENT)]"
    use_backend be_app
`,
			Extra: appBackend(t, 200),
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 1)
		r := mustDo(t, cl, "GET", c.URL("/"), nil, nil)
		require.Equal(t, 200, r.Status, r.Body)
		h := func(k string) string { return r.Header.Get(k) }
		require.Equal(t, "ok", h("X-Resp"), "the response event lost its answer (X-Agent-Error=%s X-Spoe-Error=%s)", h("X-Agent-Error"), h("X-Spoe-Error"))
		require.Equal(t, fmt.Sprint(agent.ErrCodeTimeout), h("X-Agent-Error"), "the request event is answered at the agent's deadline")
		require.Equal(t, "ABSENT", h("X-Spoe-Error"), "HAProxy never timed out")
		require.Equal(t, "ABSENT", h("X-Req"))
		<-reqDone
		time.Sleep(100 * time.Millisecond)
		require.Equal(t, int64(2), obs.acks.Load(), "one ACK per event, none late")
	})
}
