// Command example is spoe-forge's sample agent. It answers the SPOE message
// "check-request" (arguments client_ip, path, user_agent) with three txn
// variables:
//
//   - access_allowed (bool): false for paths under /admin from a client
//     that is not on a loopback address;
//   - score (int): a toy risk score;
//   - test_arg (string): the path, echoed back (the docker setup shows it as
//     the X-Test-Arg response header).
//
// A user agent containing "slow" makes the handler wait 500 ms, which shows
// ACKs leaving out of order under pipelining.
//
//	go run ./cmd/example -addr 127.0.0.1:12345
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	addr := flag.String("addr", envOr("SPOE_AGENT_ADDR", "127.0.0.1:12345"), "listen address: host:port or unix:/path")
	level := flag.String("log-level", envOr("SPOE_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	flag.Parse()

	log, err := newLogger(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(2)
	}
	defer func() { _ = log.Sync() }()

	a := agent.New(
		agent.WithLogger(log),
		agent.WithErrorVar(agent.ScopeTransaction, "error"),
	)
	a.Message("check-request", checkRequest)
	if err := a.Run(*addr); err != nil {
		log.Error("agent stopped", zap.Error(err))
		os.Exit(1)
	}
}

// checkRequest is the handler of the "check-request" message.
func checkRequest(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	ip, _ := m.IP("client_ip")
	path, _ := m.Bytes("path")
	ua, _ := m.Bytes("user_agent")

	if strings.Contains(string(ua), "slow") {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	admin := strings.HasPrefix(string(path), "/admin")
	allowed := !admin || ip.IsLoopback()
	score := int64(len(path))
	if !allowed {
		score += 100
	}
	act.SetBool(agent.ScopeTransaction, "access_allowed", allowed)
	act.SetInt(agent.ScopeTransaction, "score", score)
	act.SetString(agent.ScopeTransaction, "test_arg", string(path))
	return nil
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
