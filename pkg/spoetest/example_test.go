package spoetest_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
)

// checkRequest is the handler of the examples: it blocks 192.0.2.0/24 and
// scores the path.
func checkRequest(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	ip, ok := m.IP("ip")
	act.SetBool(agent.ScopeTransaction, "blocked", ok && netip.MustParsePrefix("192.0.2.0/24").Contains(ip))
	if path, ok := m.Bytes("path"); ok {
		act.SetInt(agent.ScopeTransaction, "score", int64(len(path)))
	}
	if m.IsNull("ua") {
		act.Unset(agent.ScopeTransaction, "ua")
	}
	return nil
}

// Call runs a handler in process on a message built in one line.
func ExampleCall() {
	msg := spoetest.NewMessage("check-request",
		spoetest.IP("ip", "192.0.2.7"), spoetest.Str("path", "/login"), spoetest.Null("ua"))
	res, err := spoetest.Call(context.Background(), checkRequest, msg)
	if err != nil {
		panic(err)
	}
	blocked, _ := res.Bool(agent.ScopeTransaction, "blocked")
	fmt.Println("blocked:", blocked)
	fmt.Println("vars:", res.Map())
	fmt.Println("error code:", res.Code())
	// Output:
	// blocked: true
	// vars: map[txn.blocked:true txn.score:6 txn.ua:<nil>]
	// error code: 0
}

// A handler that fails is reported as the agent would report it in its
// error variable.
func ExampleResult_Code() {
	res, _ := spoetest.Call(context.Background(), func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		act.SetBool(agent.ScopeTransaction, "seen", true)
		panic("boom")
	}, spoetest.NewMessage("check-request"))
	fmt.Println(res.Code() == agent.ErrCodePanic, res.Panic, len(res.Actions))
	// Output:
	// true boom 0
}

// NewServer serves a whole agent in process; a Client plays HAProxy
// against it.
func ExampleNewServer() {
	a := agent.New(agent.WithErrorVar(agent.ScopeTransaction, "agent_error"))
	a.Message("check-request", checkRequest)
	srv := spoetest.NewServer(a)
	defer srv.Close()

	c, err := srv.Client()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ack, err := c.Notify(spoetest.NewMessage("check-request",
		spoetest.IP("ip", "2001:db8::1"), spoetest.Str("path", "/"), spoetest.Str("ua", "curl")))
	if err != nil {
		panic(err)
	}
	fmt.Println("ids:", ack.StreamID, ack.FrameID)
	fmt.Println("vars:", ack.Map())
	// Output:
	// ids: 1 1
	// vars: map[txn.blocked:false txn.score:1]
}

// Pipeline sends one NOTIFY per message, as HAProxy does for concurrent
// requests, and returns the ACKs in the order of the messages.
func ExampleClient_Pipeline() {
	a := agent.New()
	a.Message("check-request", checkRequest)
	srv := spoetest.NewServer(a)
	defer srv.Close()

	c, err := srv.Client(spoetest.WithStyle(spoetest.HAProxy26))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	var msgs []spoetest.Message
	for _, p := range []string{"/", "/ab", "/abcd"} {
		msgs = append(msgs, spoetest.NewMessage("check-request", spoetest.Str("path", p)))
	}
	acks, err := c.Pipeline(msgs...)
	if err != nil {
		panic(err)
	}
	for _, ack := range acks {
		score, _ := ack.Int(agent.ScopeTransaction, "score")
		fmt.Printf("stream %d: score %d\n", ack.StreamID, score)
	}
	// Output:
	// stream 0: score 1
	// stream 2: score 3
	// stream 4: score 5
}

// Healthcheck does what HAProxy's "option spop-check" does.
func ExampleHealthcheck() {
	srv := spoetest.NewServer(agent.New())
	defer srv.Close()

	h, err := spoetest.Healthcheck(srv.Addr)
	fmt.Println(h.Version, h.MaxFrameSize, err)
	_, err = spoetest.Healthcheck("127.0.0.1:1")
	fmt.Println(strings.Contains(fmt.Sprint(err), "connection refused"))
	// Output:
	// 2.0 16380 <nil>
	// true
}

// A handler reads a whole header block (args headers=req.hdrs_bin) with
// Message.Headers; spoetest.Headers builds one.
func ExampleHeaders() {
	handler := func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		h, ok := m.Headers("headers")
		if !ok {
			return errors.New("no headers argument")
		}
		auth, _ := h.Get("Authorization") // case-insensitive, no copy
		act.SetBool(agent.ScopeTransaction, "has_auth", len(auth) > 0)
		act.SetInt(agent.ScopeTransaction, "xff", int64(h.Count("x-forwarded-for")))
		return nil
	}
	res, err := spoetest.Call(context.Background(), handler, spoetest.NewMessage("check-request",
		spoetest.Headers("headers",
			"host", "example.test",
			"x-forwarded-for", "192.0.2.1",
			"authorization", "Bearer abc.def.ghi",
			"x-forwarded-for", "198.51.100.2")))
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Map())
	// Output:
	// map[txn.has_auth:true txn.xff:2]
}
