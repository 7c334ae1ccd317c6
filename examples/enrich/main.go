// Command enrich is an SPOE agent that enriches HTTP requests: HAProxy
// sends it a few facts of each request; it answers with a new request id
// when the request has no valid X-Request-Id (txn.enrich.request_id) and a
// risk score from 0 to 100 (txn.enrich.risk_score), which HAProxy passes
// to the application as X-Request-Id and X-Risk-Score (see README.md and
// the configuration files beside this one).
//
//	go run ./enrich -addr 127.0.0.1:12345
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"go.uber.org/zap"
)

// timeout is the agent's per-message deadline: below spoe.conf's
// "timeout processing" (200ms), so that a late answer is never sent.
const timeout = 100 * time.Millisecond

func main() {
	addr := flag.String("addr", "127.0.0.1:12345", `address to listen on: "host:port", or "unix:/path"`)
	flag.Parse()

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
	defer func() { _ = log.Sync() }()
	if err := newAgent(log).Run(*addr); err != nil { // drains on SIGTERM/SIGINT
		log.Fatal("agent", zap.Error(err))
	}
}

// newAgent returns the agent: an enricher handles the enrich message of
// spoe.conf, and a failing handler sets txn.enrich.agent_error.
func newAgent(log *zap.Logger) *agent.Agent {
	a := agent.New(
		agent.WithLogger(log),
		agent.WithTimeout(timeout),
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"),
	)
	a.Handle("enrich", enricher{})
	return a
}
