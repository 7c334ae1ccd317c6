package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// TestE2E_Fragmentation: with the agent limited to 4096-byte frames, a
// 12 KiB request body (within HAProxy's 16 KiB buffer, zero bytes included)
// reaches the handler whole on 2.6 and 3.0, which split the NOTIFY into
// fragments the agent reassembles: a NOTIFY of the negotiated size cannot
// carry it, so a whole body is the proof. The handler's sha256 of the
// argument must equal the client's. Then 8 clients upload bodies of 2000 to
// 14000 bytes at once, so that reassembly runs for several streams at a
// time.
//
// 3.1+ removed fragmentation: there the event fails inside HAProxy with
// set-on-error 259 (256 + status 3, "frame too big", spop.md §8.4) and the
// handler is never called. The test asserts that documented behaviour.
func TestE2E_Fragmentation(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		var mu sync.Mutex
		seen := map[string]int{} // id -> body length the handler saw
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-body", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				id, _ := m.String("id")
				body, ok := m.Bytes("body")
				if !ok {
					return fmt.Errorf("no body argument")
				}
				n, _ := m.Int("len")
				sum := sha256.Sum256(body)
				mu.Lock()
				seen[id] = len(body)
				mu.Unlock()
				act.SetString(agent.ScopeTransaction, "sha", hex.EncodeToString(sum[:]))
				act.SetInt(agent.ScopeTransaction, "len", int64(len(body)))
				act.SetInt(agent.ScopeTransaction, "hlen", n)
				return nil
			})
		}, agent.WithMaxFrameSize(4096))
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			// One thread: 2.6/3.0 encode an event with the smallest frame
			// size negotiated so far on its thread, HAProxy's own 16380
			// until the thread's first HELLO completes. An event encoded
			// before that, unfragmented, then fails with 259 on a 4096
			// connection (spop.md §8.4; seen on 3.0 with two threads when
			// the second thread's first connections were starting). The
			// first, sequential uploads warm the only thread.
			Global:   "    nbthread 1",
			Messages: "e2e-body",
			SPOE: `
spoe-message e2e-body
    args id=req.hdr(x-req-id) len=req.body_len body=req.body
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "sha=%[var(txn.e2e.sha,ABSENT)]\nlen=%[var(txn.e2e.len,ABSENT)]\nhlen=%[var(txn.e2e.hlen,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)

		// upload sends body and checks the answer; it runs on any goroutine.
		upload := func(cl *http.Client, id string, body []byte) error {
			sum := sha256.Sum256(body)
			r, err := do(cl, "POST", c.URL("/upload"), hdr("X-Req-Id", id), body)
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			mu.Lock()
			got, called := seen[id]
			mu.Unlock()
			want := map[string]string{
				"sha":  hex.EncodeToString(sum[:]),
				"len":  fmt.Sprint(len(body)),
				"hlen": fmt.Sprint(len(body)),
				"err":  "ABSENT",
			}
			fragmented := len(body) > 4096
			if !v.Legacy() && fragmented {
				// 3.2: no fragmentation; HAProxy fails the event itself,
				// with 256+3, and sends nothing.
				want = map[string]string{"sha": "ABSENT", "len": "ABSENT", "hlen": "ABSENT", "err": "259"}
			}
			if r.Status != 200 || fmt.Sprint(r.Vars()) != fmt.Sprint(want) {
				return fmt.Errorf("%s (%d bytes): status %d, got %v, want %v", id, len(body), r.Status, r.Vars(), want)
			}
			switch {
			case !v.Legacy() && fragmented && called:
				return fmt.Errorf("%s (%d bytes): the handler saw a NOTIFY HAProxy 3.2 cannot send", id, len(body))
			case (v.Legacy() || !fragmented) && (!called || got != len(body)):
				return fmt.Errorf("%s (%d bytes): handler called %v, with %d bytes", id, len(body), called, got)
			}
			return nil
		}
		randomBody := func(rng *rand.Rand, size int) []byte {
			body := make([]byte, size)
			for i := range body {
				body[i] = byte(rng.IntN(256))
			}
			body[0], body[size/2], body[size-1] = 0, 0, 0
			return body
		}

		// One at a time: a small body, then 12 KiB.
		cl := newClient(t, 8)
		rng := rand.New(rand.NewPCG(1, 2))
		for _, size := range []int{100, 12 * 1024} {
			require.NoError(t, upload(cl, fmt.Sprintf("body-%d", size), randomBody(rng, size)))
		}

		// Then 8 clients at once, so that fragmented NOTIFYs of several
		// streams are reassembled concurrently (on one connection or
		// several), mixed with unfragmented ones.
		const clients = 8
		sizes := []int{2000, 5000, 9000, 12 * 1024, 14000}
		errs := make(chan error, clients*len(sizes))
		var wg sync.WaitGroup
		for g := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 3))
				for i, size := range sizes {
					errs <- upload(cl, fmt.Sprintf("conc-%d-%d", g, i), randomBody(rng, size))
				}
			}()
		}
		wg.Wait()
		close(errs)
		var bad []string
		for err := range errs {
			if err != nil {
				bad = append(bad, err.Error())
			}
		}
		require.Empty(t, bad, "concurrent uploads")
		ta.requireNoProblems(t)
	})
}

// TestE2E_Async: with agent.WithAsync(true) on 2.6/3.0, an ACK whose own
// connection died leaves on another connection of the same HAProxy engine,
// and HAProxy applies it.
//
// Setup: one HAProxy thread (one engine-id), "max-waiting-frames 1" so that
// a second concurrent event needs a second agent connection, and a TCP proxy
// between HAProxy and the agent so that the test can cut exactly the
// connection that carried a given NOTIFY (the agent has no API to name or
// abort one connection). Request A's handler blocks; request B opens the
// second connection and completes; the test cuts A's connection, waits until
// the agent has seen it die (the agent half-closes its side), then lets A's
// handler finish: A's response must carry the handler's variable.
func TestE2E_Async(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		if !v.Legacy() {
			t.Skip("SKIP (not applicable): HAProxy 3.1+ removed async (spop.md §8.3, §8.5): an ACK must come back on its NOTIFY's connection")
		}
		const marker = "cut-this-connection-A"
		startedA := make(chan struct{})
		releaseA := make(chan struct{})
		var ctxErrA atomic.Value
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-async", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				id, _ := m.String("id")
				if id == marker {
					close(startedA)
					select {
					case <-releaseA:
					case <-ctx.Done():
					}
					ctxErrA.Store(fmt.Sprint(ctx.Err()))
				}
				act.SetString(agent.ScopeTransaction, "done", "handled-"+id)
				return nil
			})
		}, agent.WithAsync(true), agent.WithTimeout(10*time.Second))
		px := startProxy(t, ta.Addr)
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: px.Addr(),
			Global:     "    nbthread 1",
			Messages:   "e2e-async",
			Processing: "10s",
			AgentLines: "    max-waiting-frames 1",
			SPOE: `
spoe-message e2e-async
    args id=req.hdr(x-req-id)
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "done=%[var(txn.e2e.done,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 2)

		type result struct {
			r   response
			err error
		}
		resA := make(chan result, 1)
		go func() {
			r, err := do(cl, "GET", c.URL("/a"), hdr("X-Req-Id", marker), nil)
			resA <- result{r, err}
		}()
		select {
		case <-startedA:
		case <-time.After(pollTimeout):
			t.Fatal("handler A did not start")
		}
		// B cannot use A's connection (max-waiting-frames 1): HAProxy opens a
		// second one, which stays open.
		rB := mustDo(t, cl, "GET", c.URL("/b"), hdr("X-Req-Id", "B"), nil)
		require.Equal(t, map[string]string{"done": "handled-B", "err": "ABSENT"}, rB.Vars())
		require.GreaterOrEqual(t, px.Count(), 2, "HAProxy holds two agent connections")
		require.GreaterOrEqual(t, ta.Connections(), 2)

		pA := px.Marked(marker)
		require.NotNil(t, pA, "the proxy saw A's NOTIFY")
		// Cut A's connection on the agent's side first, and wait until the
		// agent has given up on it (it half-closes its write side once its
		// outbox is closed, and stops counting it), so that A's ACK cannot
		// go out on it; then on HAProxy's side.
		live := ta.Connections()
		pA.cutAgentSide()
		select {
		case <-pA.agentEOF:
		case <-time.After(pollTimeout):
			t.Fatal("the agent did not close A's connection after EOF")
		}
		waitFor(t, "the agent to stop counting A's connection", func() bool { return ta.Connections() == live-1 })
		pA.close()
		close(releaseA)

		var res result
		select {
		case res = <-resA:
		case <-time.After(requestTimeout):
			t.Fatal("no response to A")
		}
		require.NoError(t, res.err)
		require.Equal(t, 200, res.r.Status)
		require.Equal(t, map[string]string{"done": "handled-" + marker, "err": "ABSENT"}, res.r.Vars(),
			"A's ACK reached HAProxy on the other connection")
		require.Equal(t, "<nil>", ctxErrA.Load(), "A's context must outlive its connection with async")
		ta.requireNoProblems(t)
	})
}
