package agent_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"go.uber.org/zap"
)

// A complete agent: one handler, served until SIGTERM or SIGINT.
func ExampleNew() {
	log, _ := zap.NewProduction()
	a := agent.New(
		agent.WithLogger(log),
		agent.WithTimeout(200*time.Millisecond),
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"),
	)
	blocked := netip.MustParsePrefix("192.0.2.0/24")
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		ip, ok := m.IP("ip")
		act.SetBool(agent.ScopeTransaction, "blocked", ok && blocked.Contains(ip))
		return nil
	})
	if err := a.Run("127.0.0.1:12345"); err != nil {
		log.Fatal("agent", zap.Error(err))
	}
}

// A handler reads typed arguments by name and sets variables; here a
// NOTIFY is sent by hand, as HAProxy would, and the ACK printed.
func ExampleAgent_Message() {
	a := agent.New()
	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		path, _ := m.String("path")
		act.SetString(agent.ScopeTransaction, "echo", path)
		act.SetInt(agent.ScopeTransaction, "score", int64(len(path)))
		return nil
	})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = a.Serve(l) }()
	defer func() { _ = a.Close() }()

	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	// HELLO, then one NOTIFY carrying the message.
	hello := codec.AppendHAProxyHello(nil, &codec.HAProxyHello{MaxFrameSize: 16380, RawCapabilities: []byte("pipelining")})
	payload, _ := codec.AppendMessage(nil, "check-request", codec.Arg{Name: []byte("path"), Value: codec.String("/index.html")})
	notify := codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1}, payload)
	_, _ = c.Write(append(hello, notify...))

	for range 2 {
		f := readFrame(c)
		if f.Type != codec.FrameAck {
			continue // the AGENT-HELLO
		}
		var ack codec.Ack
		_ = ack.Decode(f.Payload)
		for _, act := range ack.Actions {
			fmt.Printf("%s %s.%s\n", act.Type, act.Scope, act.Name)
		}
	}
	// Output:
	// set-var txn.echo
	// set-var txn.score
}

func readFrame(r io.Reader) codec.Frame {
	var n [4]byte
	_, _ = io.ReadFull(r, n[:])
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	_, _ = io.ReadFull(r, b)
	f, _ := codec.ParseFrame(b)
	return f
}

// Shutdown drains gracefully: in-flight NOTIFYs are answered, then every
// connection gets AGENT-DISCONNECT status 0.
func ExampleAgent_Shutdown() {
	a := agent.New()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- a.Serve(l) }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(a.Shutdown(ctx), <-done)
	// Output: <nil> agent: closed
}

// An option value that cannot work stops the agent before it listens, with
// an error that names the option; 0 would have meant the default.
func ExampleErrBadOption() {
	a := agent.New(agent.WithTimeout(-200 * time.Millisecond))
	err := a.ListenAndServe("127.0.0.1:0")
	fmt.Println(errors.Is(err, agent.ErrBadOption))
	fmt.Println(err)
	// Output:
	// true
	// agent: bad option: WithTimeout(-200ms): negative duration (0 means the default)
}

// Registering a message name twice is a mistake the agent reports at once,
// as http.ServeMux does for a pattern.
func ExampleAgent_Message_twice() {
	a := agent.New()
	handle := func(context.Context, *agent.Message, *agent.Actions) error { return nil }
	a.Message("check-request", handle)
	defer func() { fmt.Println(recover()) }()
	a.Message("check-request", handle)
	// Output:
	// spoe-forge: multiple registrations for message "check-request"
}
