package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// FuzzConnTLS is FuzzConn over mutual TLS: the same seeds, cut into writes
// of a size the fuzzer picks, reach the agent through a TLS connection.
// Whatever the input: nothing panics, the connection ends (goleak in
// TestMain), and every frame the agent sends is a well-formed AGENT-HELLO,
// ACK or AGENT-DISCONNECT, each ACK answering a NOTIFY of the input, a
// DISCONNECT being the last frame.
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
		ids := map[[2]uint64]bool{}
		for rest := data; ; {
			fr, n, _, err := codec.NextFrame(rest, codec.MaxFrameLen)
			if err != nil || fr == nil {
				break
			}
			if p, err := codec.ParseFrame(fr); err == nil && (p.Type == codec.FrameNotify || p.Type == codec.FrameUnset) {
				ids[[2]uint64{p.StreamID, p.FrameID}] = true
			}
			rest = rest[n:]
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: clientCfg}
		nc, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		tc := nc.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		wrote := make(chan struct{})
		defer func() {
			_ = tc.Close()
			<-wrote
		}()
		go func() {
			defer close(wrote)
			chunk := int(split)%64 + 1
			for b := data; len(b) > 0; {
				n := min(chunk, len(b))
				if _, err := tc.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
			_ = tc.CloseWrite() // close_notify: the end of the input
		}()
		checkAgentFrames(t, tc, ids)
		deadline := time.Now().Add(10 * time.Second)
		for a.Connections() > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the connection did not end")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// checkAgentFrames reads what the agent sends on nc until it closes, and
// fails the test on a frame that is malformed, not one an agent sends, an
// ACK that answers no NOTIFY of ids (stream-id, frame-id), or anything
// after an AGENT-DISCONNECT.
func checkAgentFrames(t *testing.T, nc net.Conn, ids map[[2]uint64]bool) {
	t.Helper()
	disconnected := false
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(nc, hdr[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the agent neither answered nor closed within 10 s")
			}
			return
		}
		if disconnected {
			t.Fatal("a frame after AGENT-DISCONNECT")
		}
		n := uint32(hdr[0])<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3])
		if n < codec.MinFrameLen || n > codec.DefaultMaxFrameSize {
			t.Fatalf("the agent sent a frame of LENGTH %d", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(nc, body); err != nil {
			t.Fatalf("the agent's frame was cut: %v", err)
		}
		fr, err := codec.ParseFrame(body)
		if err != nil {
			t.Fatalf("the agent sent a malformed frame: %v", err)
		}
		if fr.Flags != codec.FlagFin {
			t.Fatalf("flags %#x", fr.Flags)
		}
		switch fr.Type {
		case codec.FrameAgentHello:
			var h codec.AgentHello
			if err := h.Decode(fr.Payload); err != nil || h.Validate(codec.MaxFrameLen) != nil {
				t.Fatalf("bad AGENT-HELLO: %v", err)
			}
		case codec.FrameAck:
			var ack codec.Ack
			if err := ack.Decode(fr.Payload); err != nil {
				t.Fatalf("malformed ACK: %v", err)
			}
			if !ids[[2]uint64{fr.StreamID, fr.FrameID}] {
				t.Fatalf("ACK %d/%d answers no NOTIFY of the input", fr.StreamID, fr.FrameID)
			}
		case codec.FrameAgentDisconnect:
			var d codec.Disconnect
			if err := d.Decode(fr.Payload); err != nil || !d.HasStatus || len(d.Message) > codec.MaxDisconnectMessageLen {
				t.Fatalf("bad AGENT-DISCONNECT: %v %+v", err, d)
			}
			disconnected = true
		default:
			t.Fatalf("the agent sent a %v frame", fr.Type)
		}
	}
}
