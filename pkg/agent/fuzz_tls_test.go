package agent_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
)

// FuzzConnTLS is FuzzConn over mutual TLS: the same seeds, cut into writes
// of a size the fuzzer picks, reach the agent through a TLS connection, and
// the same checks hold (fuzzExchange): nothing panics, the connection ends
// (goleak in TestMain), every frame the agent sends is well-formed, a
// DISCONNECT is the last, and every complete NOTIFY gets exactly one ACK
// unless the agent disconnected or the stream was a health check.
func FuzzConnTLS(f *testing.F) {
	p := newPKI(f)
	a, addr := fuzzAgent(f, agent.WithTLS(p.serverConfig(f)))
	clientCfg := p.clientConfig(f, p.client)
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: clientCfg}
		// The agent's 200 ms HELLO deadline covers the handshake; under
		// -race on a loaded machine a handshake can miss it, which says
		// nothing of the input: dial again.
		var nc net.Conn
		var err error
		for range 3 {
			if nc, err = d.Dial("tcp", addr); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		fuzzExchange(t, a, nc, data, split) // closes the write side with close_notify
	})
}
