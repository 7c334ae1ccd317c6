package agent_test

import (
	"context"

	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// fuzzSeeds returns byte streams as HAProxy could send them: the captured
// HELLOs and NOTIFYs of each version, and the bad-input corpus behind a
// HELLO.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors", "manifest.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var m struct {
		Vectors []struct {
			File, Direction, Name string
		}
	}
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	streams := map[string][]byte{}
	for _, v := range m.Vectors {
		if v.Direction != "haproxy->agent" {
			continue
		}
		h, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors", v.File))
		if err != nil {
			tb.Fatal(err)
		}
		raw, _ := hex.DecodeString(strings.TrimSpace(string(h)))
		branch := filepath.Dir(v.File)
		if v.Name == "haproxy-hello" {
			streams[branch] = append(raw, streams[branch]...)
		} else if !strings.Contains(v.Name, "hello") {
			streams[branch] = append(streams[branch], raw...)
		}
		seeds = append(seeds, raw)
	}
	for _, s := range streams {
		seeds = append(seeds, s)
	}
	hello := spoptest.HelloFrame("pipelining,async", 16380)
	entries, _ := os.ReadDir(filepath.Join("..", "..", "testdata", "badframes"))
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".hex") {
			continue
		}
		h, _ := os.ReadFile(filepath.Join("..", "..", "testdata", "badframes", e.Name()))
		raw, _ := hex.DecodeString(strings.TrimSpace(string(h)))
		seeds = append(seeds, raw, append(append([]byte{}, hello...), raw...))
	}
	return seeds
}

// expectedAcks plays the agent's rules over an input stream, assuming
// every frame in it is valid: how many ACKs each (stream-id, frame-id) must
// get (a NOTIFY with FIN, or the last fragment of one, neither aborted), and
// whether the stream opens with a health check (then none, and the agent
// closes after its HELLO). If the agent finds the stream invalid it sends an
// AGENT-DISCONNECT, and the count no longer holds.
func expectedAcks(data []byte) (want map[[2]uint64]int, healthcheck bool) {
	want = map[[2]uint64]int{}
	partial := map[[2]uint64]bool{}
	first := true
	for rest := data; ; {
		fr, n, _, err := codec.NextFrame(rest, codec.MaxFrameLen)
		if err != nil || fr == nil {
			return want, healthcheck
		}
		rest = rest[n:]
		p, err := codec.ParseFrame(fr)
		if err != nil {
			return want, healthcheck
		}
		if first {
			first = false
			var h codec.HAProxyHello
			if p.Type == codec.FrameHAProxyHello && h.Decode(p.Payload) == nil && h.Healthcheck {
				return want, true
			}
			continue
		}
		id := [2]uint64{p.StreamID, p.FrameID}
		switch {
		case p.Type != codec.FrameNotify && p.Type != codec.FrameUnset:
		case p.Flags.Abort():
			delete(partial, id)
		case p.Type == codec.FrameNotify && p.Flags.Fin():
			want[id]++
		case p.Type == codec.FrameNotify:
			partial[id] = true
		case p.Flags.Fin() && partial[id]:
			delete(partial, id)
			want[id]++
		}
	}
}

// FuzzConn feeds arbitrary byte streams, cut into writes of a size the
// fuzzer picks, to a whole agent over loopback. Whatever the input: nothing
// panics, the connection ends (no goroutine is left: TestMain runs goleak),
// every frame the agent sends is a well-formed AGENT-HELLO, ACK or
// AGENT-DISCONNECT, a DISCONNECT is the last frame, and unless the agent
// sent one (the input was invalid) or the stream was a health check, every
// complete NOTIFY of the input gets exactly one ACK.
func FuzzConn(f *testing.F) {
	a, addr := fuzzAgent(f)
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fuzzExchange(t, a, nc, data, split)
	})
}

// fuzzAgent adds the seeds of FuzzConn and FuzzConnTLS to f and serves an
// agent with short deadlines and more options on loopback until f ends; its
// fallback handler sets a variable per argument. It returns the agent and
// its address.
func fuzzAgent(f *testing.F, opts ...agent.Option) (*agent.Agent, string) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0))
		f.Add(s, uint8(7))
	}
	a := agent.New(append([]agent.Option{agent.WithHelloTimeout(200 * time.Millisecond), agent.WithTimeout(100 * time.Millisecond),
		agent.WithMaxMessageSize(64 << 10)}, opts...)...)
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
	return a, l.Addr().String()
}

// fuzzExchange writes data to the agent a on nc, cut into writes of a size
// split picks, and checks everything the agent sends back (see FuzzConn),
// until the agent closes; it closes nc and waits for the agent to forget
// the connection. nc is any connection to a (TCP, TLS) that can close its
// write side.
func fuzzExchange(t *testing.T, a *agent.Agent, nc net.Conn, data []byte, split uint8) {
	t.Helper()
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	want, healthcheck := expectedAcks(data)
	missing := 0
	for _, n := range want {
		missing += n
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		chunk := int(split)%64 + 1
		for b := data; len(b) > 0; {
			n := min(chunk, len(b))
			if _, err := nc.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}()
	got := map[[2]uint64]int{}
	disconnected, closed, halfClosed := false, false, false
	for {
		if missing == 0 && !halfClosed {
			// Everything expected has come: hang up, as HAProxy
			// would, and read what is left until the agent closes
			// (a second ACK would show here).
			<-wrote
			_ = nc.(interface{ CloseWrite() error }).CloseWrite()
			halfClosed = true
		}
		var hdr [4]byte
		if _, err := io.ReadFull(nc, hdr[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the agent neither answered nor closed within 10 s (%d ACKs missing)", missing)
			}
			closed = true
			break
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
			id := [2]uint64{fr.StreamID, fr.FrameID}
			got[id]++
			if got[id] > want[id] {
				t.Fatalf("ACK %d/%d answers no NOTIFY of the input, or one answered already", fr.StreamID, fr.FrameID)
			}
			missing--
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
	if closed && !disconnected && !healthcheck && missing > 0 {
		t.Fatalf("the agent closed without AGENT-DISCONNECT with %d ACKs missing", missing)
	}
	_ = nc.Close()
	<-wrote
	deadline := time.Now().Add(10 * time.Second)
	for a.Connections() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not end")
		}
		time.Sleep(time.Millisecond)
	}
}
