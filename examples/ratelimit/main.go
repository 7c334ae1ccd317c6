// Command ratelimit is an SPOE agent that limits the request rate of each
// client IP address (IPv6 clients by /64): HAProxy sends it the source
// address of each HTTP request; it answers with txn.ratelimit.limited,
// txn.ratelimit.remaining and, when limited, txn.ratelimit.retry_after,
// and HAProxy answers 429 to limited requests (see README.md and the
// configuration files beside this one).
//
//	go run ./examples/ratelimit -addr 127.0.0.1:12345 -rate 10 -burst 20
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
	var c config
	flag.Float64Var(&c.Rate, "rate", 10, "sustained requests per second per client")
	flag.IntVar(&c.Burst, "burst", 20, "requests a client may make at once")
	flag.DurationVar(&c.Idle, "idle", 10*time.Minute, "how long a client without requests is remembered (at least burst/rate)")
	flag.IntVar(&c.MaxClients, "max-clients", 100_000, "most clients remembered at once")
	flag.IntVar(&c.IPv6Prefix, "ipv6-prefix", 64, "IPv6 clients are counted by network of this prefix length")
	flag.Parse()

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratelimit:", err)
		os.Exit(1)
	}
	defer func() { _ = log.Sync() }()
	a, err := newAgent(log, c)
	if err != nil {
		log.Fatal("configuration", zap.Error(err))
	}
	if err := a.Run(*addr); err != nil { // drains on SIGTERM/SIGINT
		log.Fatal("agent", zap.Error(err))
	}
}

// newAgent returns the agent: the limiter handles the check-rate message
// of spoe.conf, and a failing handler sets txn.ratelimit.error.
func newAgent(log *zap.Logger, c config) (*agent.Agent, error) {
	l, err := newLimiter(c)
	if err != nil {
		return nil, err
	}
	a := agent.New(
		agent.WithLogger(log),
		agent.WithTimeout(timeout),
		agent.WithErrorVar(agent.ScopeTransaction, "error"),
	)
	a.Handle("check-rate", l)
	return a, nil
}
