package middleware_test

import (
	"context"
	"fmt"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/middleware"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"go.uber.org/zap"
)

// Middleware for every message with Use, and for one at registration. The
// handler of "slow" outlives its 20 ms Timeout: the agent answers with the
// error variable set to 3 and without the handler's variables.
func Example() {
	log := zap.NewNop()
	a := agent.New(agent.WithLogger(log))
	a.Use(
		middleware.Recover(),
		middleware.AccessLog(log, middleware.Every(100)),
		middleware.ErrorVar(agent.ScopeTransaction, "agent_error"),
	)
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	}, middleware.Timeout(50*time.Millisecond))
	a.Message("slow", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		<-ctx.Done() // the 20 ms of Timeout, not the agent's 200 ms
		return ctx.Err()
	}, middleware.Timeout(20*time.Millisecond))

	srv := spoetest.NewServer(a) // in production: a.Run("127.0.0.1:12345")
	defer srv.Close()
	c, err := srv.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, name := range []string{"check-request", "slow"} {
		ack, err := c.Notify(spoetest.NewMessage(name))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(name, ack.Actions)
	}
	// Output:
	// check-request [set-var txn.ok=bool:true]
	// slow [set-var txn.agent_error=int64:1003]
}
