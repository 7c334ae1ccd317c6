package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// errCase is one value of an error variable, provoked through real
// HAProxy.
type errCase struct {
	name string
	// engine is the X-Case header of the request: it selects the SPOE
	// engine that sends the event. mode is X-Mode, the handler's
	// behaviour.
	engine, mode string
	body         int // bytes of request body (POST) when above 0
	// before sets up the case (arms the disconnecting proxy).
	before func()
	// agentErr and spoeErr are the expected txn.e2e.agent_error (the
	// agent's WithErrorVar) and txn.e2e.spoe_error (HAProxy's
	// set-on-error), "ABSENT" when unset; spoeErr31, when set, replaces
	// spoeErr on 3.1+ (3.2, 3.4).
	agentErr, spoeErr, spoeErr31 string
	// beforeVar is the expected txn.e2e.before, set by the handler before
	// it fails: kept after an error, dropped after a panic or a deadline.
	beforeVar string
	// muxOnly, when set, says why 2.6/3.0 cannot produce the value: the
	// case is skipped there.
	muxOnly string
}

// TestE2E_ErrorCodes provokes, through real HAProxy, every value of the two
// error variables that the README's "Error variables" table lists as
// reachable, and checks each in the variable HAProxy shows:
//
//   - the agent's (WithErrorVar(ScopeTransaction, "agent_error")): 1001 a
//     handler error, 1002 a panic, 1003 a handler blocked past WithTimeout,
//     1004 actions larger than the negotiated frame, 1005 an invalid action
//     (a 64-byte name); HAProxy's own variable stays unset, since the agent
//     answered in time;
//   - HAProxy's ("option set-on-error spoe_error"): 1 "timeout processing"
//     shorter than the handler; 2 no agent reachable (every server DOWN;
//     3.1+ say 257); 3 an event larger than the spoe-agent's
//     max-frame-size; 256+N an AGENT-DISCONNECT with status N while the
//     event is in flight (a proxy between HAProxy and the agent sends it:
//     0, what a drain that crosses a NOTIFY sends, which 3.1+ report as
//     257, and 100, an agent-specific status); 259 (256+3) an event larger
//     than the agent's smaller answer to HAProxy's max-frame-size offer.
//     The agent's variable stays unset.
//
// Where versions differ, the case says what each shows; a value a version
// cannot produce is skipped there, with the reason.
// Each SPOE engine of the configuration has its own agent backend, so that
// what one case does to its connections cannot reach another case.
func TestE2E_ErrorCodes(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		const deadline = 300 * time.Millisecond // the agent's WithTimeout
		handler := func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			mode, _ := m.String("mode")
			act.SetString(agent.ScopeTransaction, "before", mode)
			switch mode {
			case "ok":
				return nil
			case "error":
				return fmt.Errorf("the handler failed on purpose")
			case "panic":
				panic("the handler panicked on purpose")
			case "deadline", "slow":
				<-ctx.Done() // blocks past WithTimeout
				return ctx.Err()
			case "too-large":
				// Larger than any frame HAProxy can negotiate (65532).
				act.SetString(agent.ScopeTransaction, "huge", strings.Repeat("x", 70000))
				return nil
			case "bad-action":
				// 64 bytes: longer than HAProxy can hold; the action is
				// refused, the others are kept.
				act.SetString(agent.ScopeTransaction, strings.Repeat("n", 64), "x")
				return nil
			}
			if body, ok := m.Bytes("body"); ok {
				act.SetInt(agent.ScopeTransaction, "len", int64(len(body)))
				return nil
			}
			return fmt.Errorf("unknown mode %q", mode)
		}
		register := func(a *agent.Agent) { a.Message("e2e-err", handler) }
		opts := []agent.Option{agent.WithErrorVar(agent.ScopeTransaction, "agent_error"), agent.WithTimeout(deadline)}
		main := startAgent(t, register, opts...)
		// The same, answering max-frame-size 4096 to HAProxy's 16380.
		small := startAgent(t, register, append(opts, agent.WithMaxFrameSize(4096))...)
		px := startDisconnectProxy(t, main.Addr)

		dir, err := os.MkdirTemp("", "e2e")
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		mode := "spop"
		if v.Legacy() {
			mode = "tcp"
		}
		legacyTimeouts := ""
		noFrag := ""
		if v.Legacy() {
			legacyTimeouts = "    timeout hello 2s\n    timeout idle 60s\n"
			// Else 2.6/3.0 fragment the event, which the agent
			// reassembles: no error to see (spop.md §8.4).
			noFrag = "    no option send-frag-payload\n"
		}
		// engine returns an SPOE engine of its own: a spoe-agent that sends
		// the message e2e-err when X-Case is the engine's name, to backend
		// be, with the same var-prefix and set-on-error as the others.
		engine := func(name, be, processing, extra string) string {
			return fmt.Sprintf(`
[%[1]s]
spoe-agent %[1]s-agent
    messages e2e-err
    option var-prefix e2e
    option set-on-error spoe_error
%[4]s%[5]s    timeout processing %[3]s
    use-backend %[2]s
    log global

spoe-message e2e-err
    args mode=req.hdr(x-mode) body=req.body
    event on-frontend-http-request if { req.hdr(x-case) -m str %[1]s }
`, name, be, processing, legacyTimeouts, extra)
		}
		backend := func(name, server string, opts string) string {
			return fmt.Sprintf(`
backend %s
    mode %s
    timeout connect 1s
    timeout server 60s
    server s1 %s %s
`, name, mode, server, opts)
		}
		var filters strings.Builder
		for _, e := range []string{"slow", "big", "small", "down", "disc"} {
			fmt.Fprintf(&filters, "    filter spoe engine %s config %s/spoe.conf\n", e, dir)
		}
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: main.Addr, Check: true, Dir: dir,
			Messages: "e2e-err",
			SPOE: `
spoe-message e2e-err
    args mode=req.hdr(x-mode)
    event on-frontend-http-request if { req.hdr(x-case) -m str agent }
` + engine("slow", "be_slow", "100ms", "") +
				engine("big", "be_big", "2s", "    max-frame-size 1024\n"+noFrag) +
				engine("small", "be_small", "2s", "") +
				engine("down", "be_down", "2s", "") +
				engine("disc", "be_disc", "2s", ""),
			Frontend: filters.String() + `
    http-request return status 200 content-type text/plain lf-string "agent_error=%[var(txn.e2e.agent_error,ABSENT)]\nspoe_error=%[var(txn.e2e.spoe_error,ABSENT)]\nbefore=%[var(txn.e2e.before,ABSENT)]\n"
`,
			Extra: backend("be_slow", main.Addr, "") +
				backend("be_big", main.Addr, "") +
				backend("be_small", small.Addr, "") +
				backend("be_down", fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t)), "check inter 100ms fall 1 rise 1\n    option spop-check") +
				backend("be_disc", px.Addr(), ""),
		}
		startHAProxy(t, bin, c)
		waitServer(t, c.Stats(), "be_down", "s1", "DOWN", "L4CON")

		const no = "ABSENT"
		cases := []errCase{
			{name: "success", engine: "agent", mode: "ok", agentErr: no, spoeErr: no, beforeVar: "ok"},
			// The agent's values: HAProxy got its ACK in time.
			{name: "handler error", engine: "agent", mode: "error", agentErr: "1001", spoeErr: no, beforeVar: "error"},
			{name: "panic", engine: "agent", mode: "panic", agentErr: "1002", spoeErr: no, beforeVar: no},
			{name: "past the deadline", engine: "agent", mode: "deadline", agentErr: "1003", spoeErr: no, beforeVar: no},
			{name: "actions too large", engine: "agent", mode: "too-large", agentErr: "1004", spoeErr: no, beforeVar: no},
			{name: "invalid action", engine: "agent", mode: "bad-action", agentErr: "1005", spoeErr: no, beforeVar: "bad-action"},
			// HAProxy's values: the ACK never came, or never could.
			{name: "timeout processing", engine: "slow", mode: "slow", agentErr: no, spoeErr: "1", beforeVar: no},
			{name: "no agent reachable", engine: "down", agentErr: no, spoeErr: "2", spoeErr31: "257", beforeVar: no},
			{name: "event over max-frame-size", engine: "big", body: 4000, agentErr: no, spoeErr: "3", beforeVar: no},
			{name: "DISCONNECT status 0", engine: "disc", before: func() { px.arm(codec.StatusNormal) },
				agentErr: no, spoeErr: "256", spoeErr31: "257", beforeVar: no},
			{name: "DISCONNECT status 100", engine: "disc", before: func() { px.arm(agent.StatusLameDuck) },
				agentErr: no, spoeErr: "356", beforeVar: no},
			{name: "event over the agent's answer", engine: "small", body: 12 * 1024, agentErr: no, spoeErr: "259", beforeVar: no,
				muxOnly: "2.6/3.0 fragment the event for an agent that announces fragmentation, and the agent reassembles it; they fail it with 259 only when it is encoded before its thread's first HELLO completes, a race (spop.md §8.4)"},
		}
		cl := newClient(t, 1)
		var table []string
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if why := tc.muxOnly; why != "" && v.Legacy() {
					table = append(table, fmt.Sprintf("%-30s skipped: 3.1+ only", tc.name))
					t.Skipf("HAProxy %s cannot produce it: %s", v, why)
				}
				want := tc.spoeErr
				if tc.spoeErr31 != "" && !v.Legacy() {
					want = tc.spoeErr31
				}
				if tc.before != nil {
					tc.before()
				}
				var body []byte
				method := "GET"
				if tc.body > 0 {
					method, body = "POST", make([]byte, tc.body)
				}
				mode := tc.mode
				if mode == "" {
					mode = "body"
				}
				start := time.Now()
				r := mustDo(t, cl, method, c.URL("/"), hdr("X-Case", tc.engine, "X-Mode", mode), body)
				took := time.Since(start)
				require.Equal(t, 200, r.Status, r.Body)
				if tc.engine == "agent" {
					require.Less(t, took, 2*time.Second, "answered before HAProxy's timeout processing")
				}
				if mode == "deadline" {
					require.GreaterOrEqual(t, took, deadline, "the handler ran until its deadline")
				}
				got := r.Vars()
				table = append(table, fmt.Sprintf("%-30s agent_error=%-6s spoe_error=%s", tc.name, got["agent_error"], got["spoe_error"]))
				require.Equal(t, map[string]string{"agent_error": tc.agentErr, "spoe_error": want, "before": tc.beforeVar}, got)
			})
		}
		t.Logf("HAProxy %s, the error variables HAProxy showed:\n%s", v, strings.Join(table, "\n"))
	})
}

// disconnectProxy forwards SPOP between HAProxy and an agent frame by frame.
// Once armed, it answers the next NOTIFY itself with an AGENT-DISCONNECT of
// the armed status, instead of passing it to the agent, and closes that
// connection: HAProxy sees what it sees when an agent gives up on a
// connection with a NOTIFY in flight.
type disconnectProxy struct {
	l      net.Listener
	target string
	status atomic.Int64 // armed status + 1; 0 when not armed
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startDisconnectProxy(t *testing.T, target string) *disconnectProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &disconnectProxy{l: l, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *disconnectProxy) Addr() string { return p.l.Addr().String() }

// arm makes the proxy answer the next NOTIFY with AGENT-DISCONNECT status.
func (p *disconnectProxy) arm(status codec.Status) { p.status.Store(int64(status) + 1) }

func (p *disconnectProxy) accept() {
	defer p.wg.Done()
	for {
		hc, err := p.l.Accept()
		if err != nil {
			return
		}
		ac, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			_ = hc.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, hc, ac)
		p.mu.Unlock()
		var wmu sync.Mutex // whole frames to HAProxy, one writer at a time
		p.wg.Add(2)
		go func() { // agent -> HAProxy
			defer p.wg.Done()
			for {
				f, err := readRawFrame(ac)
				if err != nil {
					_ = hc.Close()
					return
				}
				wmu.Lock()
				_, err = hc.Write(f)
				wmu.Unlock()
				if err != nil {
					_ = ac.Close()
					return
				}
			}
		}()
		go func() { // HAProxy -> agent
			defer p.wg.Done()
			for {
				f, err := readRawFrame(hc)
				if err != nil {
					_ = ac.Close()
					return
				}
				if codec.FrameType(f[codec.LengthPrefixLen]) == codec.FrameNotify {
					if s := p.status.Swap(0); s != 0 {
						time.Sleep(injectDelay)
						wmu.Lock()
						_, _ = hc.Write(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.Status(s-1), "injected by the test"))
						wmu.Unlock()
						// As an agent does (spop.md §7.3): no more writes,
						// let HAProxy read the frame, then close.
						_ = hc.(*net.TCPConn).CloseWrite()
						_ = ac.Close()
						_ = hc.SetReadDeadline(time.Now().Add(time.Second))
						_, _ = io.Copy(io.Discard, hc)
						_ = hc.Close()
						return
					}
				}
				if _, err := ac.Write(f); err != nil {
					_ = hc.Close()
					return
				}
			}
		}()
	}
}

// injectDelay is how long the proxy holds a NOTIFY before it answers with
// the DISCONNECT. HAProxy 3.2 and 3.4 sometimes lose a DISCONNECT that
// arrives within a millisecond of the NOTIFY: the event then waits for
// "timeout processing" (error 1; seen in 6 of 20 tries without a delay,
// none of 20 with 20 ms or 100 ms). An agent's answer takes longer than
// that anyway.
const injectDelay = 50 * time.Millisecond

// readRawFrame reads one frame, length prefix included.
func readRawFrame(r io.Reader) ([]byte, error) {
	var prefix [codec.LengthPrefixLen]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if n < codec.MinFrameLen || n > 1<<20 {
		return nil, fmt.Errorf("frame length %d", n)
	}
	f := make([]byte, codec.LengthPrefixLen+int(n))
	copy(f, prefix[:])
	if _, err := io.ReadFull(r, f[codec.LengthPrefixLen:]); err != nil {
		return nil, err
	}
	return f, nil
}
