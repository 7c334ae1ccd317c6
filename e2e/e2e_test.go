package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// TestE2E_HealthCheck: "option spop-check" marks the agent UP (the check
// itself passed: check_status L7OK, not merely "not yet checked"), and a
// server on a closed port DOWN (L4CON). HAProxy's own view is read twice: on
// the stats socket and through nbsrv/srv_is_up in a response.
func TestE2E_HealthCheck(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		ta := startAgent(t, nil)
		mode := "spop"
		if v.Legacy() {
			mode = "tcp"
		}
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-never",
			SPOE: `
spoe-message e2e-never
    args path=path
    event on-frontend-http-request if { path /never }
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "a1=%[srv_is_up(be_spoa/a1)]\nnbsrv=%[nbsrv(be_spoa)]\nd1=%[srv_is_up(be_dead/d1)]\nnbdead=%[nbsrv(be_dead)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
			Extra: fmt.Sprintf(`
backend be_dead
    mode %s
    timeout connect 1s
    option spop-check
    server d1 127.0.0.1:%d check inter 300ms
`, mode, haproxytest.FreePort(t)),
		}
		startHAProxy(t, bin, c) // waits for a1 UP with L7OK
		dead := waitServer(t, c.Stats(), "be_dead", "d1", "DOWN", "L4CON")
		t.Logf("d1: status %s, check %s (%s)", dead["status"], dead["check_status"], dead["last_chk"])

		cl := newClient(t, 1)
		want := map[string]string{"a1": "1", "nbsrv": "1", "d1": "0", "nbdead": "0", "err": "ABSENT"}
		var got map[string]string
		waitFor(t, "nbsrv/srv_is_up to agree", func() bool {
			r, err := do(cl, "GET", c.URL("/health"), nil, nil)
			if err != nil || r.Status != 200 {
				return false
			}
			got = r.Vars()
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return true
		})
		require.Equal(t, want, got)

		// The UP state holds: several checks later a1 is still UP.
		st, err := fleettest.ShowStat(c.Stats())
		require.NoError(t, err)
		require.Equal(t, "UP", st["be_spoa/a1"]["status"])
		require.Equal(t, "L7OK", st["be_spoa/a1"]["check_status"])
		ta.requireNoProblems(t)
	})
}

// gotArg is one argument as a handler saw it, copied out of the frame.
// Val is nil (NULL), bool, int64, netip.Addr, string (STRING) or []byte
// (BINARY).
type gotArg struct {
	Name string
	Type codec.Type
	Val  any
}

func copyArgs(m *agent.Message) []gotArg {
	var out []gotArg
	for _, a := range m.Args() {
		g := gotArg{Name: string(a.Name), Type: a.Value.Type()}
		switch a.Value.Type() {
		case codec.TypeNull:
		case codec.TypeBool:
			g.Val, _ = a.Value.Bool()
		case codec.TypeInt32, codec.TypeUint32, codec.TypeInt64, codec.TypeUint64:
			g.Val, _ = a.Value.Int()
		case codec.TypeIPv4, codec.TypeIPv6:
			g.Val, _ = a.Value.Addr()
		case codec.TypeString:
			g.Val, _ = a.Value.String()
		case codec.TypeBinary:
			b, _ := a.Value.Bytes()
			g.Val = append([]byte{}, b...)
		}
		out = append(out, g)
	}
	return out
}

// TestE2E_ArgumentTypes: every argument type HAProxy sends arrives with its
// exact type and value: IPV4 (src), IPV6, STRING (path, a header, the
// method, an unnamed literal), NULL (a missing header), empty STRING (an
// empty header), BINARY (a body with zero bytes; an empty body), INT64
// (negative and multi-byte), BOOL true and false.
func TestE2E_ArgumentTypes(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		var mu sync.Mutex
		got := map[string][]gotArg{}
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-types", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				id, _ := m.String("id")
				mu.Lock()
				got[id] = copyArgs(m)
				mu.Unlock()
				act.SetString(agent.ScopeTransaction, "seen", id)
				return nil
			})
		})
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-types",
			SPOE: `
spoe-message e2e-types
    args id=req.hdr(x-req-id) ip=src ip6=ipv6(2001:db8::1) path=path hdr=req.fhdr(x-test) missing=req.hdr(x-missing) empty=req.hdr(x-empty) body=req.body neg=int(-42) big=int(300000) max=int(9223372036854775807) bt=bool(1) bf=bool(0) method=method str(unnamed-arg)
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "seen=%[var(txn.e2e.seen,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 1)

		body := []byte{0x00, 'a', 0x00, 0x00, 0xff, 0x01, '\n', 0x00}
		cases := []struct {
			id, method, path string
			body             []byte
			wantMethod       string
			wantBody         []byte
		}{
			{id: "post", method: "POST", path: "/types/post?q=1", body: body, wantMethod: "POST", wantBody: body},
			{id: "get", method: "GET", path: "/types/get", wantMethod: "GET", wantBody: []byte{}},
		}
		for _, tc := range cases {
			h := hdr("X-Req-Id", tc.id, "X-Test", "v a l;u=e,1")
			h["X-Empty"] = []string{""}
			r := mustDo(t, cl, tc.method, c.URL(tc.path), h, tc.body)
			require.Equal(t, 200, r.Status, r.Body)
			require.Equal(t, map[string]string{"seen": tc.id, "err": "ABSENT"}, r.Vars(), "the handler's ACK was applied")

			mu.Lock()
			args := got[tc.id]
			mu.Unlock()
			want := []gotArg{
				{"id", codec.TypeString, tc.id},
				{"ip", codec.TypeIPv4, netip.MustParseAddr("127.0.0.1")},
				{"ip6", codec.TypeIPv6, netip.MustParseAddr("2001:db8::1")},
				{"path", codec.TypeString, strings.SplitN(tc.path, "?", 2)[0]},
				{"hdr", codec.TypeString, "v a l;u=e,1"},
				{"missing", codec.TypeNull, nil},
				{"empty", codec.TypeString, ""},
				{"body", codec.TypeBinary, tc.wantBody},
				{"neg", codec.TypeInt64, int64(-42)},
				{"big", codec.TypeInt64, int64(300000)},
				{"max", codec.TypeInt64, int64(9223372036854775807)},
				{"bt", codec.TypeBool, true},
				{"bf", codec.TypeBool, false},
				{"method", codec.TypeString, tc.wantMethod},
				{"", codec.TypeString, "unnamed-arg"},
			}
			require.Equal(t, want, args, "arguments of request %q", tc.id)
		}
		ta.requireNoProblems(t)
	})
}

// TestE2E_Variables: every variable type a handler sets is visible to
// HAProxy with its exact value, in scopes txn, sess, req and res (the
// latter from an on-http-response event), and unset-var removes variables
// (one set by HAProxy before the event, one set earlier in the same ACK).
func TestE2E_Variables(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-req", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				const txn = agent.ScopeTransaction
				act.SetString(txn, "str", "hello, world: ünïcode")
				act.SetBytes(txn, "bin", []byte{0x00, 0x01, 0xfe, 0xff, 0x00})
				act.SetInt(txn, "neg", -42)
				act.SetInt(txn, "big", 9223372036854775807)
				act.SetInt(txn, "min", -9223372036854775808)
				act.SetBool(txn, "bt", true)
				act.SetBool(txn, "bf", false)
				act.SetIP(txn, "v4", netip.MustParseAddr("192.0.2.1"))
				act.SetIP(txn, "v6", netip.MustParseAddr("2001:db8::2"))
				act.SetString(txn, "gone", "set, then unset in the same ACK")
				act.Unset(txn, "gone")
				act.SetString(agent.ScopeSession, "sess", "sess-value")
				act.Unset(agent.ScopeSession, "pre")
				act.SetInt(agent.ScopeRequest, "req", 7)
				return act.Err()
			})
			a.Message("e2e-res", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				status, _ := m.Int("status")
				act.SetString(agent.ScopeResponse, "res", fmt.Sprintf("res-value-%d", status))
				return act.Err()
			})
		})
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-req e2e-res",
			SPOE: `
spoe-message e2e-req
    args path=path
    event on-frontend-http-request

spoe-message e2e-res
    args status=status
    event on-http-response
`,
			Frontend: `
    tcp-request session set-var(sess.e2e.pre) str(preset)
    http-request return status 200 content-type text/plain lf-string "str=%[var(txn.e2e.str,ABSENT)]\nbin=%[var(txn.e2e.bin,ABSENT),hex]\nneg=%[var(txn.e2e.neg,ABSENT)]\nnegplus1=%[var(txn.e2e.neg),add(1)]\nbig=%[var(txn.e2e.big,ABSENT)]\nmin=%[var(txn.e2e.min,ABSENT)]\nbt=%[var(txn.e2e.bt,ABSENT)]\nbf=%[var(txn.e2e.bf,ABSENT)]\nv4=%[var(txn.e2e.v4,ABSENT)]\nv4net=%[var(txn.e2e.v4),ipmask(24)]\nv6=%[var(txn.e2e.v6,ABSENT)]\ngone=%[var(txn.e2e.gone,ABSENT)]\nsess=%[var(sess.e2e.sess,ABSENT)]\npre=%[var(sess.e2e.pre,ABSENT)]\nreq=%[var(req.e2e.req,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n" unless { path_beg /resp }
    http-response set-header X-Res "%[var(res.e2e.res,ABSENT)]"
    http-response set-header X-Txn-Str "%[var(txn.e2e.str,ABSENT)]"
    http-response set-header X-Err "%[var(txn.e2e.spoe_error,ABSENT)]"
    use_backend be_app if { path_beg /resp }
`,
			Extra: appBackend(t, 203),
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 1)

		r := mustDo(t, cl, "GET", c.URL("/vars"), nil, nil)
		require.Equal(t, 200, r.Status, r.Body)
		require.Equal(t, map[string]string{
			"str":      "hello, world: ünïcode",
			"bin":      "0001FEFF00",
			"neg":      "-42",
			"negplus1": "-41",
			"big":      "9223372036854775807",
			"min":      "-9223372036854775808",
			"bt":       "1",
			"bf":       "0",
			"v4":       "192.0.2.1",
			"v4net":    "192.0.2.0",
			"v6":       "2001:db8::2",
			"gone":     "ABSENT",
			"sess":     "sess-value",
			"pre":      "ABSENT",
			"req":      "7",
			"err":      "ABSENT",
		}, r.Vars(), "body:\n%s", r.Body)

		// The response event: the res variable is set before the
		// http-response rules run.
		r = mustDo(t, cl, "GET", c.URL("/resp"), nil, nil)
		require.Equal(t, 203, r.Status, r.Body)
		require.Equal(t, "app\n", r.Body)
		require.Equal(t, "res-value-203", r.Header.Get("X-Res"))
		require.Equal(t, "hello, world: ünïcode", r.Header.Get("X-Txn-Str"))
		require.Equal(t, "ABSENT", r.Header.Get("X-Err"))
		ta.requireNoProblems(t)
	})
}

// TestE2E_Concurrent: 500 requests from 50 concurrent clients each get their
// own answer: the handler echoes the request's X-Req-Id (after a small,
// varying delay, so that ACKs leave out of order) and HAProxy returns it.
// Pipelined NOTIFYs must not be mixed up.
func TestE2E_Concurrent(t *testing.T) {
	const clients, perClient = 50, 10
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		var handled atomic.Int64
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-echo", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				id, ok := m.String("id")
				if !ok {
					return fmt.Errorf("no id")
				}
				n := handled.Add(1)
				// 0-3 ms of "work", different for neighbouring NOTIFYs.
				time.Sleep(time.Duration(n%4) * time.Millisecond)
				act.SetString(agent.ScopeTransaction, "echo", id)
				return nil
			})
		})
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages:   "e2e-echo",
			Processing: "5s",
			SPOE:       echoSPOE,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "id=%[req.hdr(x-req-id)]\necho=%[var(txn.e2e.echo,ABSENT)]\nerr=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, clients)

		var wg sync.WaitGroup
		var ok atomic.Int64
		errs := make(chan string, clients*perClient)
		start := time.Now()
		for g := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perClient {
					id := fmt.Sprintf("req-%d-%d-%x", g, i, time.Now().UnixNano())
					r, err := do(cl, "GET", c.URL("/echo"), hdr("X-Req-Id", id), nil)
					switch {
					case err != nil:
						errs <- fmt.Sprintf("%s: %v", id, err)
					case r.Status != 200:
						errs <- fmt.Sprintf("%s: status %d", id, r.Status)
					default:
						want := map[string]string{"id": id, "echo": id, "err": "ABSENT"}
						if got := r.Vars(); fmt.Sprint(got) != fmt.Sprint(want) {
							errs <- fmt.Sprintf("%s: got %v", id, got)
						} else {
							ok.Add(1)
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		var bad []string
		for e := range errs {
			bad = append(bad, e)
		}
		t.Logf("%d requests in %v, %d handled, %d agent connections open",
			clients*perClient, time.Since(start).Round(time.Millisecond), handled.Load(), ta.Connections())
		require.Empty(t, bad, "%d of %d requests did not get their own answer", len(bad), clients*perClient)
		require.EqualValues(t, clients*perClient, ok.Load())
		require.EqualValues(t, clients*perClient, handled.Load(), "one NOTIFY per request")
		ta.requireNoProblems(t)
	})
}

// TestE2E_AckSize: the agent keeps every ACK's LENGTH at most the
// negotiated max-frame-size - 1 (spop.md §2.2: 3.2 never processes an ACK of
// exactly 16380 bytes with default buffers). A handler sizes one string
// variable so that the ACK is exactly 16379 bytes: HAProxy applies it at
// once. One byte more and the agent must refuse the actions (error variable
// agent.ErrCodeTooLarge, 1004) rather than send a frame that 3.2 would leave
// unanswered until timeout processing.
func TestE2E_AckSize(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		const mfs = codec.DefaultMaxFrameSize // HAProxy's default offer, echoed by the agent
		ta := startAgent(t, func(a *agent.Agent) {
			a.Message("e2e-size", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
				target, _ := m.Int("len") // the ACK's LENGTH to produce
				// LENGTH = type, flags, stream-id, frame-id, then set-var:
				// action, nb-args, scope, name ("big"), type byte, varint
				// length and the string itself.
				fixed := 1 + 4 + codec.VarintLen(m.StreamID()) + codec.VarintLen(m.FrameID()) + 3 + 1 + 3 + 1
				n := int(target) - fixed - 1
				for n > 0 && n+codec.VarintLen(uint64(n)) > int(target)-fixed {
					n--
				}
				if n+codec.VarintLen(uint64(n)) != int(target)-fixed {
					return fmt.Errorf("no string makes an ACK of %d bytes", target)
				}
				act.SetString(agent.ScopeTransaction, "big", strings.Repeat("x", n))
				return nil
			})
		}, agent.WithErrorVar(agent.ScopeTransaction, "agent_error"))
		c := &hapConfig{
			V: v, FEPort: haproxytest.FreePort(t), AgentAddr: ta.Addr, Check: true,
			Messages: "e2e-size",
			SPOE: `
spoe-message e2e-size
    args len=req.hdr_val(x-len)
    event on-frontend-http-request
`,
			Frontend: `
    http-request return status 200 content-type text/plain lf-string "biglen=%[var(txn.e2e.big),length]\nagent_error=%[var(txn.e2e.agent_error,ABSENT)]\nspoe_error=%[var(txn.e2e.spoe_error,ABSENT)]\n"
`,
		}
		startHAProxy(t, bin, c)
		cl := newClient(t, 1)
		for _, tc := range []struct {
			name   string
			length int
			want   map[string]string
		}{
			{"max", mfs - 1, map[string]string{"agent_error": "ABSENT", "spoe_error": "ABSENT"}},
			{"max+1", mfs, map[string]string{"biglen": "", "agent_error": fmt.Sprint(agent.ErrCodeTooLarge), "spoe_error": "ABSENT"}},
			{"small", 1000, map[string]string{"agent_error": "ABSENT", "spoe_error": "ABSENT"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				r := mustDo(t, cl, "GET", c.URL("/size"), hdr("X-Len", fmt.Sprint(tc.length)), nil)
				took := time.Since(start)
				require.Equal(t, 200, r.Status)
				vars := r.Vars()
				if _, ok := tc.want["biglen"]; !ok {
					// The variable holds the whole string: its length is the
					// target minus the fixed bytes.
					n, err := strconv.Atoi(vars["biglen"])
					require.NoError(t, err, "biglen=%q", vars["biglen"])
					require.InDelta(t, tc.length-20, n, 6)
					delete(vars, "biglen")
				}
				require.Equal(t, tc.want, vars, "ACK LENGTH %d", tc.length)
				require.Less(t, took, time.Second, "HAProxy answered at once, not on timeout processing")
			})
		}
	})
}
