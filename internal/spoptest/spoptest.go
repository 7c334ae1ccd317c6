// Package spoptest plays HAProxy against an agent over a real connection: a
// small SPOP client for unit tests of the engine's stages. End-to-end tests
// use real HAProxy binaries instead (internal/haproxytest).
package spoptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Timeout bounds every read and write of a Client.
const Timeout = 5 * time.Second

// Client is the HAProxy side of one connection.
type Client struct {
	t  testing.TB
	NC net.Conn
}

// Dial connects to addr over TCP; the connection is closed at cleanup.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("spoptest: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &Client{t: t, NC: nc}
}

// NewClient plays HAProxy on nc, a connection the caller opened (over TLS,
// on a unix socket...); nc is closed at cleanup.
func NewClient(t testing.TB, nc net.Conn) *Client {
	t.Cleanup(func() { _ = nc.Close() })
	return &Client{t: t, NC: nc}
}

// HelloFrame returns a HAPROXY-HELLO as HAProxy 2.6 sends it, with the given
// capabilities and max-frame-size and engine-id "spoptest-engine".
func HelloFrame(caps string, mfs uint32) []byte {
	return codec.AppendHAProxyHello(nil, &codec.HAProxyHello{
		SupportedVersions: []byte("2.0"),
		MaxFrameSize:      mfs,
		RawCapabilities:   []byte(caps),
		EngineID:          []byte("spoptest-engine"),
	})
}

// Hello sends a HAPROXY-HELLO and returns the decoded AGENT-HELLO, failing
// the test if the agent answers anything else.
func (c *Client) Hello(caps string, mfs uint32) codec.AgentHello {
	c.t.Helper()
	c.Write(HelloFrame(caps, mfs))
	f := c.ReadFrame()
	if f.Type != codec.FrameAgentHello {
		c.t.Fatalf("spoptest: expected AGENT-HELLO, got %v", f.Type)
	}
	var h codec.AgentHello
	if err := h.Decode(f.Payload); err != nil {
		c.t.Fatalf("spoptest: AGENT-HELLO: %v", err)
	}
	return h
}

// Write writes b, failing the test on error.
func (c *Client) Write(b []byte) {
	c.t.Helper()
	_ = c.NC.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := c.NC.Write(b); err != nil {
		c.t.Fatalf("spoptest: write: %v", err)
	}
}

// TryReadFrame reads one frame (its payload is a fresh copy).
func (c *Client) TryReadFrame() (codec.Frame, error) {
	_ = c.NC.SetReadDeadline(time.Now().Add(Timeout))
	var hdr [4]byte
	if _, err := io.ReadFull(c.NC, hdr[:]); err != nil {
		return codec.Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < codec.MinFrameLen || n > 1<<24 {
		return codec.Frame{}, errors.New("spoptest: bad frame length")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.NC, b); err != nil {
		return codec.Frame{}, err
	}
	return codec.ParseFrame(b)
}

// ReadFrame reads one frame, failing the test on error.
func (c *Client) ReadFrame() codec.Frame {
	c.t.Helper()
	f, err := c.TryReadFrame()
	if err != nil {
		c.t.Fatalf("spoptest: read frame: %v", err)
	}
	return f
}

// Msg is a message to put in a NOTIFY.
type Msg struct {
	Name string
	Args []codec.Arg
}

// A returns an argument, for Msg literals.
func A(name string, v codec.Value) codec.Arg { return codec.Arg{Name: []byte(name), Value: v} }

// NotifyPayload encodes a list of messages.
func NotifyPayload(msgs ...Msg) []byte {
	var p []byte
	for _, m := range msgs {
		var err error
		if p, err = codec.AppendMessage(p, m.Name, m.Args...); err != nil {
			panic(err)
		}
	}
	return p
}

// NotifyFrame encodes a whole NOTIFY frame.
func NotifyFrame(sid, fid uint64, msgs ...Msg) []byte {
	return codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: sid, FrameID: fid}, NotifyPayload(msgs...))
}

// Notify sends a NOTIFY.
func (c *Client) Notify(sid, fid uint64, msgs ...Msg) {
	c.t.Helper()
	c.Write(NotifyFrame(sid, fid, msgs...))
}

// Ack is a decoded ACK.
type Ack struct {
	StreamID, FrameID uint64
	Actions           []codec.Action
}

// Var returns the action on the variable name.
func (a *Ack) Var(name string) (codec.Action, bool) {
	for _, x := range a.Actions {
		if string(x.Name) == name {
			return x, true
		}
	}
	return codec.Action{}, false
}

// ReadAck reads one frame and fails the test unless it is a valid ACK.
func (c *Client) ReadAck() Ack {
	c.t.Helper()
	f := c.ReadFrame()
	if f.Type != codec.FrameAck {
		if f.Type == codec.FrameAgentDisconnect {
			var d codec.Disconnect
			_ = d.Decode(f.Payload)
			c.t.Fatalf("spoptest: expected ACK, got AGENT-DISCONNECT %d %q", d.Status, d.Message)
		}
		c.t.Fatalf("spoptest: expected ACK, got %v", f.Type)
	}
	if !f.Flags.Fin() || f.Flags.Abort() {
		c.t.Fatalf("spoptest: ACK flags %#x", f.Flags)
	}
	var a codec.Ack
	if err := a.Decode(f.Payload); err != nil {
		c.t.Fatalf("spoptest: ACK payload: %v", err)
	}
	return Ack{StreamID: f.StreamID, FrameID: f.FrameID, Actions: a.Actions}
}

// ReadDisconnect reads one frame and fails the test unless it is an
// AGENT-DISCONNECT; it returns the decoded payload.
func (c *Client) ReadDisconnect() codec.Disconnect {
	c.t.Helper()
	f := c.ReadFrame()
	if f.Type != codec.FrameAgentDisconnect {
		c.t.Fatalf("spoptest: expected AGENT-DISCONNECT, got %v", f.Type)
	}
	if f.StreamID != 0 || f.FrameID != 0 || f.Flags != codec.FlagFin {
		c.t.Fatalf("spoptest: AGENT-DISCONNECT header %+v", f.Header)
	}
	var d codec.Disconnect
	if err := d.Decode(f.Payload); err != nil {
		c.t.Fatalf("spoptest: AGENT-DISCONNECT payload: %v", err)
	}
	if !d.HasStatus || len(d.Message) > codec.MaxDisconnectMessageLen {
		c.t.Fatalf("spoptest: AGENT-DISCONNECT %+v", d)
	}
	return d
}

// ExpectClosed reads until the agent closes the connection, failing the test
// if a frame or anything but EOF/reset arrives first.
func (c *Client) ExpectClosed() {
	c.t.Helper()
	_ = c.NC.SetReadDeadline(time.Now().Add(Timeout))
	var b [1]byte
	n, err := c.NC.Read(b[:])
	if n > 0 || err == nil {
		c.t.Fatalf("spoptest: expected the connection closed, read %d bytes", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("spoptest: the agent did not close the connection")
	}
}

// RoundTrip writes frame and reads one reply frame into buf (which must be
// large enough), returning the reply's LENGTH. It allocates nothing, for
// allocation tests that drive a whole agent; it panics on I/O errors, since
// testing.AllocsPerRun gives it no way to fail the test.
func (c *Client) RoundTrip(frame, buf []byte) int {
	if _, err := c.NC.Write(frame); err != nil {
		panic(err)
	}
	if _, err := io.ReadFull(c.NC, buf[:4]); err != nil {
		panic(err)
	}
	n := int(binary.BigEndian.Uint32(buf[:4]))
	if _, err := io.ReadFull(c.NC, buf[:n]); err != nil {
		panic(err)
	}
	return n
}

// LoadStats is what Pipeline saw on one connection.
type LoadStats struct {
	Sent, Acked int
	// Latency of each ACK, NOTIFY written to ACK read, in arrival order.
	Latency []time.Duration
	// Unmatched counts ACKs for no NOTIFY in flight (a second ACK, or
	// invented ids).
	Unmatched int
}

// Pipeline plays HAProxy on one new connection to addr: a HELLO offering
// pipelining, then NOTIFYs with stream-ids 1, 2, 3... (frame-id 1), built by
// frame(sid), keeping depth of them in flight, until stop is closed; then it
// waits for the ACKs of those in flight and closes. onAck, if not nil, is
// called with each ACK, its NOTIFY's stream-id and the time from the
// NOTIFY's write to the ACK's read. It is safe to call from
// any goroutine (it never fails the test itself) and returns the first
// error: a DISCONNECT, a read or write error, or an ACK missing 5 s after
// stop.
func Pipeline(addr string, depth int, stop <-chan struct{}, frame func(sid uint64) []byte, onAck func(sid uint64, f codec.Frame, latency time.Duration)) (LoadStats, error) {
	var st LoadStats
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		return st, err
	}
	defer nc.Close()
	c := &Client{NC: nc}
	if _, err := nc.Write(HelloFrame("pipelining", codec.DefaultMaxFrameSize)); err != nil {
		return st, err
	}
	f, err := c.TryReadFrame()
	if err != nil {
		return st, err
	}
	if f.Type != codec.FrameAgentHello {
		return st, errors.New("spoptest: no AGENT-HELLO")
	}
	var mu sync.Mutex // guards inflight and st.Sent between writer and reader
	inflight := make(map[uint64]time.Time, depth)
	slots := make(chan struct{}, depth)
	tokens := make(chan struct{}, depth) // one per NOTIFY written: an ACK to read
	writeErr := make(chan error, 1)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for sid := uint64(1); ; sid++ {
			select {
			case <-stop:
				return
			case slots <- struct{}{}:
			}
			b := frame(sid)
			mu.Lock()
			inflight[sid] = time.Now()
			st.Sent++
			mu.Unlock()
			_ = nc.SetWriteDeadline(time.Now().Add(Timeout))
			if _, err := nc.Write(b); err != nil {
				writeErr <- err
				return
			}
			tokens <- struct{}{}
		}
	}()
	readAck := func() error {
		for {
			f, err := c.TryReadFrame()
			if err != nil {
				return err
			}
			if f.Type == codec.FrameAgentDisconnect {
				var d codec.Disconnect
				_ = d.Decode(f.Payload)
				return fmt.Errorf("spoptest: AGENT-DISCONNECT %d: %s", d.Status, d.Message)
			}
			if f.Type != codec.FrameAck {
				continue
			}
			mu.Lock()
			at, ok := inflight[f.StreamID]
			delete(inflight, f.StreamID)
			mu.Unlock()
			if !ok {
				st.Unmatched++
				continue
			}
			st.Acked++
			lat := time.Since(at)
			st.Latency = append(st.Latency, lat)
			if onAck != nil {
				onAck(f.StreamID, f, lat)
			}
			<-slots
			return nil
		}
	}
	var rerr error
	finished := false
	for !finished && rerr == nil {
		select {
		case <-tokens:
			rerr = readAck()
		case <-writerDone:
			finished = true
			for len(tokens) > 0 && rerr == nil {
				<-tokens
				rerr = readAck()
			}
		}
	}
	if rerr != nil {
		_ = nc.Close() // the writer's next write fails
		go func() {    // and it must not wait for a slot or a token meanwhile
			for {
				select {
				case <-slots:
				case <-tokens:
				case <-writerDone:
					return
				}
			}
		}()
	}
	<-writerDone
	select {
	case err := <-writeErr:
		if rerr == nil {
			rerr = err
		}
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	return st, rerr
}

// AllocsPerRun calls f n times, after as many warm-up calls, and returns
// the heap allocations and bytes per call, exactly: testing.AllocsPerRun
// rounds down to an integer, which would hide an allocation made once per
// hundred calls. Every goroutine's allocations count (a NOTIFY's path runs
// on several), so keep the process otherwise idle.
func AllocsPerRun(n int, f func()) (allocs, bytes float64) {
	for range n {
		f()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(n), float64(after.TotalAlloc-before.TotalAlloc) / float64(n)
}
