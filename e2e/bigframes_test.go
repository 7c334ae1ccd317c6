package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// TestE2E_BufSize64K: with tune.bufsize 65536 HAProxy offers a
// max-frame-size of 65532, and an agent with default options answers it,
// so a 60 KB body arrives whole in one NOTIFY on every version (3.1+ has no
// fragmentation: with the old 16380 answer it failed with 259).
func TestE2E_BufSize64K(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-body", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				body, ok := m.Bytes("body")
				if !ok {
					return fmt.Errorf("no body argument")
				}
				sum := sha256.Sum256(body)
				act.SetString(agent.ScopeTransaction, "sha", hex.EncodeToString(sum[:]))
				act.SetInt(agent.ScopeTransaction, "len", int64(len(body)))
				return nil
			})
		})
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Global:   "    tune.bufsize 65536",
			Messages: "e2e-body",
			SPOE: `
spoe-message e2e-body
    args body=req.body
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "sha=%[var(txn.e2e.sha,ABSENT)]\nlen=%[var(txn.e2e.len,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 1)
		rng := rand.New(rand.NewPCG(1, 2))
		body := make([]byte, 60000)
		for i := range body {
			body[i] = byte(rng.UintN(256))
		}
		sum := sha256.Sum256(body)
		r := mustDo(t, cl, "POST", c.URL("/upload"), nil, body)
		require.Equal(t, 200, r.Status, r.Body)
		require.Equal(t, map[string]string{"sha": hex.EncodeToString(sum[:]), "len": "60000", "err": "ABSENT"}, r.Vars())
		ta.requireNoProblems(t)
	})
}
