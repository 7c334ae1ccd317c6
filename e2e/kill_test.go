package e2e

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// TestE2E_KillAndRestart: HAProxy is killed with SIGKILL while 8 clients
// send requests, then started again. The agent sees its connections vanish
// mid-flight (no DISCONNECT, possibly NOTIFYs in flight), serves the new
// process's connections, logs nothing above info, and its connection and
// goroutine counts come back to their idle level afterwards.
func TestE2E_KillAndRestart(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-echo", echo)
		})
		idleGoroutines := agentGoroutines()
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-echo",
			SPOE:     echoSPOE,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "echo=%[var(txn.e2e.echo,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		for round := range 2 {
			p := startHAProxy(t, bin, c)
			cl := newClient(t, 8)
			stop, abandon := make(chan struct{}), make(chan struct{})
			results := loadLoop(cl, c.URL("/kill"), 8, stop, abandon)
			ok := 0
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := range results {
					if o.err == nil && o.resp.Status == 200 && o.resp.Vars()["echo"] == o.id {
						ok++
					}
				}
			}()
			waitFor(t, "agent connections under load", func() bool { return ta.Connections() > 0 })
			time.Sleep(200 * time.Millisecond) // let the load run a little
			require.NoError(t, p.Kill())
			_ = p.Wait(5 * time.Second)
			close(stop)
			wg.Wait()
			close(abandon)
			require.Positive(t, ok, "round %d: no request was answered before the kill", round)
			// The agent notices the dead peer and cleans up.
			waitFor(t, "agent connections to end", func() bool { return ta.Connections() == 0 })
		}
		// Every goroutine of those connections ends (idle pool workers
		// aside, which exit on their own after 10 s).
		waitFor(t, "the agent's goroutines back to idle", func() bool {
			return agentGoroutines() <= idleGoroutines
		})
		ta.requireNoProblems(t)
	})
}

// agentGoroutines counts the goroutines running the agent's code (idle
// handler-pool workers excepted): the HTTP clients, HAProxy watchers and
// test goroutines of this process are not the agent's.
func agentGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("spoe-forge/spoe-forge/pkg/")) && !bytes.Contains(g, []byte("panjf2000/ants")) &&
			!bytes.Contains(g, []byte("spoe-forge/e2e.")) {
			n++
		}
	}
	return n
}
