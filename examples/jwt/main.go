// Command jwt is an SPOE agent that checks the bearer token of each HTTP
// request: a JWT signed with HS256. HAProxy sends it the Authorization
// header; it answers with txn.auth.jwt_valid, and txn.auth.jwt_sub or
// txn.auth.jwt_error, and HAProxy denies invalid requests with 401 (see
// README.md and the configuration files beside this one).
//
//	JWT_SECRET=$(cat secret) go run ./jwt -addr 127.0.0.1:12345
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"go.uber.org/zap"
)

// timeout is the agent's per-message deadline: below spoe.conf's
// "timeout processing" (500ms), so that a late answer is never sent.
const timeout = 250 * time.Millisecond

func main() {
	addr := flag.String("addr", "127.0.0.1:12345", `address to listen on: "host:port", or "unix:/path"`)
	secretFile := flag.String("secret-file", "", "file holding the HS256 secret (default: the JWT_SECRET environment variable)")
	issuer := flag.String("issuer", "", "iss claim tokens must carry (empty: not checked)")
	audience := flag.String("audience", "", "aud claim tokens must carry (empty: not checked)")
	leeway := flag.Duration("leeway", 30*time.Second, "clock skew allowed on exp, nbf and iat")
	flag.Parse()

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jwt:", err)
		os.Exit(1)
	}
	defer func() { _ = log.Sync() }()
	secret, err := loadSecret(*secretFile, os.Getenv("JWT_SECRET"))
	if err != nil {
		log.Fatal("secret", zap.Error(err))
	}
	a, err := newAgent(log, config{Secret: secret, Issuer: *issuer, Audience: *audience, Leeway: *leeway})
	if err != nil {
		log.Fatal("configuration", zap.Error(err))
	}
	if err := a.Run(*addr); err != nil { // drains on SIGTERM/SIGINT
		log.Fatal("agent", zap.Error(err))
	}
}

// newAgent returns the agent: the verifier handles the check-token message
// of spoe.conf, and a failing handler sets txn.auth.agent_error.
func newAgent(log *zap.Logger, c config) (*agent.Agent, error) {
	v, err := newVerifier(c)
	if err != nil {
		return nil, err
	}
	a := agent.New(
		agent.WithLogger(log),
		agent.WithTimeout(timeout),
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"),
	)
	a.Handle("check-token", v)
	return a, nil
}

// loadSecret reads the secret from file, or takes env when file is empty.
// A final newline in the file is not part of the secret.
func loadSecret(file, env string) ([]byte, error) {
	if file == "" {
		if env == "" {
			return nil, errors.New("no secret: use -secret-file or set JWT_SECRET")
		}
		return []byte(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(b, "\r\n"), nil
}
