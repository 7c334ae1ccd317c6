package agent_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// FuzzConnTLS is FuzzConn over mutual TLS: the same seeds, cut into writes
// of a size the fuzzer picks, reach the agent through a TLS connection, and
// the same checks hold (fuzzExchange): nothing panics, the connection ends
// (goleak in TestMain), every frame the agent sends is well-formed, a
// DISCONNECT is the last, and every complete NOTIFY gets exactly one ACK
// unless the agent disconnected or the stream was a health check.
func FuzzConnTLS(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0))
		f.Add(s, uint8(7))
	}
	p := newPKI(f)
	a := agent.New(agent.WithHelloTimeout(200*time.Millisecond), agent.WithTimeout(100*time.Millisecond),
		agent.WithMaxMessageSize(64<<10), agent.WithTLS(p.serverConfig(f)))
	a.Fallback(func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		for _, arg := range m.Args() {
			if len(arg.Name) > 0 && len(arg.Name) <= codec.MaxVarNameLen {
				act.Set(agent.ScopeTransaction, string(arg.Name), arg.Value)
			}
		}
		return nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
		<-served
	})
	clientCfg := p.clientConfig(f, p.client)
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: clientCfg}
		// The agent's 200 ms HELLO deadline covers the handshake; under
		// -race on a loaded machine a handshake can miss it, which says
		// nothing of the input: dial again.
		var nc net.Conn
		var err error
		for range 3 {
			if nc, err = d.Dial("tcp", l.Addr().String()); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		fuzzExchange(t, a, nc, data, split) // closes the write side with close_notify
	})
}
