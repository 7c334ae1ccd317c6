package middleware_test

import (
	"context"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/middleware"
	"go.uber.org/zap"
)

// Middleware for every message with Use, and for one at registration.
func Example() {
	log := zap.NewNop()
	a := agent.New(agent.WithLogger(log))
	a.Use(
		middleware.Recover(),
		middleware.AccessLog(log, middleware.Every(100)),
		middleware.ErrorVar(agent.ScopeTransaction, "error"),
	)
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "ok", true)
		return nil
	}, middleware.Timeout(50*time.Millisecond))
	_ = a // a.Run("127.0.0.1:12345")
	// Output:
}
