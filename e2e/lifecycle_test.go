package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// outcome is what one request of a load loop got.
type outcome struct {
	id   string
	err  error // transport error
	resp response
}

// loadLoop sends GET path with a unique X-Req-Id from n goroutines until
// stop is closed, and reports every outcome on the returned channel, which
// is closed once every goroutine has returned. The caller reads it until it
// is closed, or closes abandon to make the goroutines give up (when the
// test failed half-way).
func loadLoop(cl *http.Client, url string, n int, stop, abandon <-chan struct{}) <-chan outcome {
	out := make(chan outcome, 1024)
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("load-%d-%d", g, i)
				r, err := do(cl, "GET", url, hdr("X-Req-Id", id), nil)
				select {
				case out <- outcome{id: id, err: err, resp: r}:
				case <-abandon:
					return // nobody reads any more: the test has failed
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// TestE2E_Reload: HAProxy is reloaded three times in a row (new process
// with -sf, the old one soft-stops) while 8 clients send requests. The agent
// keeps serving: each old process's agent connections end (DISCONNECT on
// 2.6/3.0, a reset on 3.2) and the process exits, each new process's
// requests get their answers, and the agent logs no warning or error. Every
// response must carry its own request's answer, and no request may fail, at
// the HTTP level or in the SPOE: the clients' connections are kept alive,
// the old process closes them after a response, and Go retries an
// idempotent request whose kept-alive connection was closed before any
// answer.
func TestE2E_Reload(t *testing.T) {
	const reloads, clients, perGen = 3, 8, 50
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-echo", echo)
		})
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages:   "e2e-echo",
			Processing: "5s",
			SPOE:       echoSPOE,
		}
		// Each generation's configuration says which one answered.
		frontend := func(gen int) string {
			return fmt.Sprintf(`
    http-request return status 200 content-type text/plain lf-string "gen=%d\necho=%%[var(txn.e2e.echo,ABSENT)]\nerr=%%[var(txn.e2e.spoe_error,ABSENT)]\n"
`, gen)
		}
		c.Frontend = frontend(1)
		p := startHAProxy(t, bin, c)
		cl := newClient(t, clients)

		stop, abandon := make(chan struct{}), make(chan struct{})
		stopOnce := sync.OnceFunc(func() { close(stop) })
		defer close(abandon)
		defer stopOnce()
		results := loadLoop(cl, c.URL("/reload"), clients, stop, abandon)
		byGen := map[string]int{}
		var total int
		var bad []string
		collect := func(what string, timeout time.Duration, until func() bool) {
			t.Helper()
			deadline := time.After(timeout)
			for !until() {
				select {
				case o, ok := <-results:
					if !ok {
						return
					}
					total++
					vars := o.resp.Vars()
					switch {
					case o.err != nil:
						bad = append(bad, fmt.Sprintf("%s: %v", o.id, o.err))
					case o.resp.Status != 200 || vars["echo"] != o.id || vars["err"] != "ABSENT" || vars["gen"] == "":
						bad = append(bad, fmt.Sprintf("%s: status %d %v", o.id, o.resp.Status, vars))
					default:
						byGen[vars["gen"]]++
					}
				case <-deadline:
					stopOnce()
					t.Fatalf("timed out waiting for %s: %d requests, by generation %v, failures %v", what, total, byGen, bad)
				}
			}
		}
		collect("generation 1", pollTimeout, func() bool { return byGen["1"] >= perGen })
		var switches []time.Duration
		for gen := 2; gen <= reloads+1; gen++ {
			c.Frontend = frontend(gen)
			start := time.Now()
			old := p
			p = haproxytest.Reload(t, old, bin, c.render(t), c.FEAddr())
			require.NoError(t, old.Wait(20*time.Second), "generation %d must finish its soft stop", gen-1)
			switches = append(switches, time.Since(start).Round(time.Millisecond))
			if time.Since(start) > 3*time.Second {
				// Seen once on 3.0 (10 s, the client/server timeouts): keep
				// what the old process said, to find which connection held it.
				t.Logf("generation %d took %v to exit; its output:\n%s", gen-1, time.Since(start), old.Output())
			}
			g := fmt.Sprint(gen)
			collect("generation "+g, pollTimeout, func() bool { return byGen[g] >= perGen })
		}
		stopOnce()
		collect("the load to end", 2*requestTimeout, func() bool { return false })

		t.Logf("%d requests, answered by generation: %v, %d failed; reloads (until the old process exited) took %v",
			total, byGen, len(bad), switches)
		require.Empty(t, bad, "requests that did not get their own answer")
		ta.requireNoProblems(t)
	})
}

// TestE2E_Shutdown: agent.Shutdown under load loses no ACK for a NOTIFY it
// accepted. Handlers record the request id they start with; every request
// whose handler started must get that handler's answer back through
// HAProxy, and the others (NOTIFYs that reached the agent after it stopped
// taking them, or never reached it) must get HAProxy's set-on-error value
// instead. Two loads:
//
//   - blocked: every handler blocks; once all 16 clients' handlers are in
//     flight the agent is shut down, and only once its listener is closed
//     (Shutdown has begun) are the handlers released, while the clients keep
//     sending. This guarantees NOTIFYs in flight during the drain.
//   - busy: 32 clients, handlers take 1-3 ms; Shutdown is called once 150
//     handlers have finished, with no coordination with the handlers.
func TestE2E_Shutdown(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		t.Run("blocked", func(t *testing.T) { shutdownUnderLoad(t, v, bin, true) })
		t.Run("busy", func(t *testing.T) { shutdownUnderLoad(t, v, bin, false) })
	})
}

func shutdownUnderLoad(t *testing.T, v haproxytest.Version, bin string, blocked bool) {
	clients := 32
	if blocked {
		clients = 16
	}
	var (
		mu       sync.Mutex
		started  = map[string]bool{}
		finished atomic.Int64
		release  = make(chan struct{})
	)
	if !blocked {
		close(release)
	}
	ta := startAgent(t, func(a *agent.Agent) {
		a.Message("e2e-echo", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			id, _ := m.String("id")
			mu.Lock()
			started[id] = true
			n := len(started)
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !blocked {
				time.Sleep(time.Duration(n%3+1) * time.Millisecond) // the handler's "work"
			}
			act.SetString(agent.ScopeTransaction, "echo", id)
			finished.Add(1)
			return nil
		})
	}, agent.WithTimeout(2500*time.Millisecond))
	c := &hapConfig{
		V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
		Messages: "e2e-echo",
		// After the agent left, 2.6 fails the NOTIFYs it still has on this
		// timeout (error 1), 3.x on the failed reconnects (257).
		Processing: "3s",
		SPOE:       echoSPOE,
		Frontend: `
    http-request return status 200 content-type text/plain lf-string "echo=%[var(txn.e2e.echo,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
	}
	startHAProxy(t, bin, c)
	cl := newClient(t, clients)

	stop, abandon := make(chan struct{}), make(chan struct{})
	stopOnce := sync.OnceFunc(func() { close(stop) })
	defer close(abandon)
	defer stopOnce()
	results := loadLoop(cl, c.URL("/shutdown"), clients, stop, abandon)
	nStarted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(started)
	}
	if blocked {
		waitFor(t, "every client's handler to block", func() bool { return nStarted() == clients })
	} else {
		waitFor(t, "150 handlers to finish", func() bool { return finished.Load() >= 150 })
	}

	shutdownErr := make(chan error, 1)
	shutdownStart := time.Now()
	inFlightAtShutdown := nStarted() - int(finished.Load())
	go func() { shutdownErr <- ta.stop() }()
	if blocked {
		waitFor(t, "the agent to stop listening", func() bool {
			c, err := net.DialTimeout("tcp", ta.Addr, time.Second)
			if err == nil {
				_ = c.Close()
			}
			return err != nil
		})
		close(release)
	}
	select {
	case err := <-shutdownErr:
		require.NoError(t, err, "Shutdown must drain within its deadline")
	case <-time.After(agentStopTimeout + 5*time.Second):
		t.Fatal("Shutdown did not return")
	}
	shutdownTook := time.Since(shutdownStart)
	require.Zero(t, ta.Connections(), "no connection left after Shutdown")
	stopOnce()

	errCodes := map[string]int{}
	var answered, refused int
	var lost, wrong []string
	got := map[string]bool{}
	for o := range results {
		if o.err != nil {
			wrong = append(wrong, fmt.Sprintf("%s: %v", o.id, o.err))
			continue
		}
		vars := o.resp.Vars()
		switch {
		case o.resp.Status != 200:
			wrong = append(wrong, fmt.Sprintf("%s: status %d", o.id, o.resp.Status))
		case vars["echo"] == o.id && vars["err"] == "ABSENT":
			answered++
			got[o.id] = true
		case vars["echo"] == "ABSENT" && vars["err"] != "ABSENT":
			refused++
			errCodes[vars["err"]]++
		default:
			wrong = append(wrong, fmt.Sprintf("%s: %v", o.id, vars))
		}
	}
	mu.Lock()
	for id := range started {
		if !got[id] {
			lost = append(lost, id)
		}
	}
	total := len(started)
	mu.Unlock()
	sort.Strings(lost)
	t.Logf("%d handlers started, %d in flight when Shutdown was called, %d finished; Shutdown took %v; "+
		"%d requests answered, %d failed in HAProxy after the agent left (set-on-error values: %v); load ended %v after Shutdown began",
		total, inFlightAtShutdown, finished.Load(), shutdownTook.Round(time.Millisecond),
		answered, refused, errCodes, time.Since(shutdownStart).Round(time.Millisecond))
	require.Empty(t, wrong, "requests with an unexpected outcome")
	require.Empty(t, lost, "NOTIFYs whose handler started but whose ACK never reached HAProxy:\n%s", strings.Join(lost, "\n"))
	require.EqualValues(t, total, finished.Load(), "every started handler finished")
	require.Equal(t, total, answered)
	if blocked {
		require.Equal(t, clients, inFlightAtShutdown)
	}
	ta.requireNoProblems(t)
}
