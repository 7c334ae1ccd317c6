package spoetest

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// DefaultTimeout bounds each step of a Client (connecting, each write, each
// wait for a frame) unless WithTimeout says otherwise.
const DefaultTimeout = 5 * time.Second

// MaxInFlight is the number of NOTIFYs Pipeline keeps unanswered at once:
// HAProxy's default "max-waiting-frames" on 2.6/3.0, and its fixed value on
// 3.1+.
const MaxInFlight = 20

// Style says which HAProxy a Client plays: what its HELLO offers and how it
// numbers NOTIFYs.
type Style uint8

// The two SPOE engines of HAProxy.
const (
	// HAProxy32 plays HAProxy 3.1+ (the SPOP multiplexer; 3.2 and 3.4 send
	// the same frames), the default:
	// capabilities "pipelining", stream-ids 1, 3, 5 ... per connection with
	// frame-id 1, no fragmentation, and ACKs must be shorter than the
	// max-frame-size (3.2.0 never processes one of exactly that length).
	HAProxy32 Style = iota
	// HAProxy26 plays HAProxy 2.6 and 3.0 (the legacy engine):
	// capabilities "pipelining,async", stream-ids 0, 2, 4 ... with frame-id
	// 1, and a NOTIFY larger than the max-frame-size is sent in fragments
	// when the agent announced "fragmentation".
	HAProxy26
)

// String returns "HAProxy 3.1+" or "HAProxy 2.6/3.0".
func (s Style) String() string {
	if s == HAProxy26 {
		return "HAProxy 2.6/3.0"
	}
	return "HAProxy 3.1+"
}

// Option configures a Client (Dial) or a health check (Healthcheck).
type Option func(*config)

type config struct {
	style        Style
	caps         string
	capsSet      bool
	maxFrameSize uint32
	engineID     string
	engineSet    bool
	timeout      time.Duration
}

// WithStyle sets the HAProxy the Client plays; HAProxy32 by default.
func WithStyle(s Style) Option { return func(c *config) { c.style = s } }

// WithCapabilities sets the capabilities item of the HELLO, as HAProxy
// writes it ("pipelining,async", "" for none). The default is the style's:
// "pipelining" for HAProxy32, "pipelining,async" for HAProxy26.
func WithCapabilities(caps string) Option {
	return func(c *config) { c.caps, c.capsSet = caps, true }
}

// WithMaxFrameSize sets the max-frame-size the HELLO offers; 16380 (HAProxy's
// default) when 0.
func WithMaxFrameSize(n uint32) Option { return func(c *config) { c.maxFrameSize = n } }

// WithEngineID sets the engine-id of the HELLO; "" sends none. By default
// each Client sends a random UUID, as an HAProxy engine does. Clients with
// the same engine-id are interchangeable connections to an agent that
// announced "async".
func WithEngineID(id string) Option {
	return func(c *config) { c.engineID, c.engineSet = id, true }
}

// WithTimeout bounds each step: connecting, each write and each wait for a
// frame. DefaultTimeout when 0.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if !c.capsSet {
		c.caps = "pipelining"
		if c.style == HAProxy26 {
			c.caps = "pipelining,async"
		}
	}
	if c.maxFrameSize == 0 {
		c.maxFrameSize = codec.DefaultMaxFrameSize
	}
	if !c.engineSet {
		c.engineID = randomUUID()
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c
}

// randomUUID returns a version 4 UUID, the form of HAProxy's engine-ids.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Hello is what the agent answered to a HELLO.
type Hello struct {
	// Version is the SPOP version, "2.0".
	Version string
	// MaxFrameSize is the agent's max-frame-size, the connection's limit.
	MaxFrameSize uint32
	// Capabilities are the capabilities the agent announced.
	Capabilities codec.Capabilities
}

// ID identifies a NOTIFY and its ACK.
type ID struct {
	StreamID, FrameID uint64
}

// Ack is a decoded ACK: the ids of the NOTIFY it answers and its actions,
// with the lookups of Actions (String, Int, Bool, Map, ...).
type Ack struct {
	ID
	Actions
	// Aborted is true when the ACK carries the ABORT flag: the agent
	// cancelled a fragmented NOTIFY (HAProxy 2.6/3.0 then fail the event).
	Aborted bool
}

// DisconnectError is the error a Client returns when the agent sent an
// AGENT-DISCONNECT instead of the frame it waited for. Status 0 is the
// agent's graceful shutdown.
type DisconnectError struct {
	Status  codec.Status
	Message string
}

// Error implements the error interface.
func (e *DisconnectError) Error() string {
	return fmt.Sprintf("spoetest: the agent disconnected with status %d (%s): %q", uint32(e.Status), e.Status, e.Message)
}

// ErrClosed is returned by a Client's methods after Close.
var ErrClosed = errors.New("spoetest: client closed")

// Client plays HAProxy on one connection to an agent: Dial makes the HELLO
// handshake, then Notify, Pipeline, or Send and Recv exchange NOTIFYs and
// ACKs. Every step is bounded by the Client's timeout. Once the connection
// fails (an I/O error, a malformed or unexpected frame, an AGENT-DISCONNECT)
// every method returns that first error, and ErrClosed once it is closed.
//
// A Client is safe for concurrent use: several goroutines may call Notify at
// once, each getting its own ACK. Send and Recv are for a caller that
// matches ACKs itself; do not mix Recv with concurrent Notify or Pipeline
// calls, which would miss the ACKs Recv takes.
type Client struct {
	nc            net.Conn
	cfg           config
	hello         Hello
	pipelining    bool // both sides announced it
	fragmentation bool // HAProxy26 style and the agent announced it

	mu          sync.Mutex // guards the fields below; never held during I/O
	nextSID     uint64
	outstanding map[ID]struct{} // NOTIFYs sent and not yet answered
	err         error           // the first failure; sticky

	rmu     sync.Mutex // held by the one goroutine reading; guards pending
	pending []*Ack     // ACKs read while waiting for another

	closeOnce sync.Once
}

// Dial connects to the agent at addr ("host:port") and makes the HELLO
// handshake. It fails if the agent's AGENT-HELLO is not one HAProxy 3.2
// accepts: FLAGS exactly FIN, ids 0, version 2.0, a max-frame-size from 256
// to the offer, and a capabilities item.
func Dial(addr string, opts ...Option) (*Client, error) {
	cfg := newConfig(opts)
	nc, err := net.DialTimeout("tcp", addr, cfg.timeout)
	if err != nil {
		return nil, fmt.Errorf("spoetest: %w", err)
	}
	return newClient(nc, cfg)
}

// NewClient makes the HELLO handshake on nc, a connection to an agent that
// the caller established (over TCP, a unix socket, TLS ...), and returns
// the Client playing HAProxy on it, as Dial does. The Client owns nc from
// then on: NewClient closes it when the handshake fails, and Close closes
// it. Every step is bounded by the Client's timeout through nc's deadlines.
func NewClient(nc net.Conn, opts ...Option) (*Client, error) {
	return newClient(nc, newConfig(opts))
}

// newClient makes the HELLO handshake on nc; see NewClient.
func newClient(nc net.Conn, cfg config) (*Client, error) {
	c := &Client{nc: nc, cfg: cfg, outstanding: make(map[ID]struct{})}
	if cfg.style == HAProxy32 {
		c.nextSID = 1
	}
	hello := &codec.HAProxyHello{MaxFrameSize: cfg.maxFrameSize, RawCapabilities: []byte(cfg.caps)}
	if cfg.engineID != "" {
		hello.EngineID = []byte(cfg.engineID)
	}
	if err := c.write(codec.AppendHAProxyHello(nil, hello)); err != nil {
		_ = nc.Close()
		return nil, err
	}
	h, err := c.readHello(cfg.maxFrameSize)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	c.hello = h
	offered := codec.ParseCapabilities([]byte(cfg.caps))
	c.pipelining = offered.Has(codec.CapPipelining) && h.Capabilities.Has(codec.CapPipelining)
	c.fragmentation = cfg.style == HAProxy26 && h.Capabilities.Has(codec.CapFragmentation)
	return c, nil
}

// Healthcheck does what HAProxy's "option spop-check" does: it connects to
// addr, sends the health-check HELLO (no capabilities, "healthcheck" true,
// no engine-id), reads one frame and closes. It returns the agent's answer,
// or an error if the answer is not an AGENT-HELLO that HAProxy 3.2's check
// accepts (see Dial). Of the options, only WithMaxFrameSize and
// WithTimeout matter.
func Healthcheck(addr string, opts ...Option) (Hello, error) {
	cfg := newConfig(opts)
	nc, err := net.DialTimeout("tcp", addr, cfg.timeout)
	if err != nil {
		return Hello{}, fmt.Errorf("spoetest: %w", err)
	}
	defer nc.Close()
	c := &Client{nc: nc, cfg: cfg}
	hello := &codec.HAProxyHello{MaxFrameSize: cfg.maxFrameSize, RawCapabilities: []byte{}, Healthcheck: true}
	if err := c.write(codec.AppendHAProxyHello(nil, hello)); err != nil {
		return Hello{}, err
	}
	return c.readHello(cfg.maxFrameSize)
}

// readHello reads and checks the AGENT-HELLO answering an offer.
func (c *Client) readHello(offer uint32) (Hello, error) {
	f, err := c.readFrame(offer)
	if err != nil {
		return Hello{}, err
	}
	switch f.Type {
	case codec.FrameAgentHello:
	case codec.FrameAgentDisconnect:
		return Hello{}, disconnectError(f.Payload)
	default:
		return Hello{}, fmt.Errorf("spoetest: expected AGENT-HELLO, got %v: %w", f.Type, codec.ErrUnexpectedFrame)
	}
	if f.Flags != codec.FlagFin || f.StreamID != 0 || f.FrameID != 0 {
		return Hello{}, fmt.Errorf("spoetest: AGENT-HELLO with flags %#x and ids %d/%d (HAProxy wants FIN and 0/0): %w",
			uint32(f.Flags), f.StreamID, f.FrameID, codec.ErrBadIDs)
	}
	var h codec.AgentHello
	if err := h.Decode(f.Payload); err != nil {
		return Hello{}, fmt.Errorf("spoetest: AGENT-HELLO: %w", err)
	}
	if err := h.Validate(offer); err != nil {
		return Hello{}, fmt.Errorf("spoetest: AGENT-HELLO: %w", err)
	}
	return Hello{Version: string(h.Version), MaxFrameSize: h.MaxFrameSize, Capabilities: h.Capabilities}, nil
}

// disconnectError decodes an AGENT-DISCONNECT payload.
func disconnectError(payload []byte) error {
	var d codec.Disconnect
	if err := d.Decode(payload); err != nil {
		return fmt.Errorf("spoetest: AGENT-DISCONNECT: %w", err)
	}
	if !d.HasStatus {
		return fmt.Errorf("spoetest: AGENT-DISCONNECT without status-code: %w", codec.ErrBadKVType)
	}
	return &DisconnectError{Status: d.Status, Message: string(d.Message)}
}

// Hello returns what the agent answered to the HELLO.
func (c *Client) Hello() Hello { return c.hello }

// Pipelining reports whether both sides announced pipelining. Without it
// the Client, like HAProxy, keeps one NOTIFY at a time in flight.
func (c *Client) Pipelining() bool { return c.pipelining }

// Send sends one NOTIFY carrying msgs (none is valid: HAProxy 3.1 and 3.2.0
// send empty NOTIFYs) and returns its ids without waiting for the ACK;
// Recv reads it. Without pipelining, Send fails while a NOTIFY is
// unanswered. A NOTIFY larger than the max-frame-size is split in
// fragments in the HAProxy26 style when the agent announced
// "fragmentation"; otherwise Send fails with codec.ErrFrameTooBig, as
// HAProxy fails the event.
func (c *Client) Send(msgs ...Message) (ID, error) {
	id, frames, err := c.prepare(nil, msgs)
	if err != nil {
		return ID{}, err
	}
	if err := c.write(frames); err != nil {
		return ID{}, err
	}
	return id, nil
}

// Notify sends one NOTIFY carrying msgs and returns its ACK.
func (c *Client) Notify(msgs ...Message) (*Ack, error) {
	id, err := c.Send(msgs...)
	if err != nil {
		return nil, err
	}
	return c.waitFor(func(x ID) bool { return x == id })
}

// Pipeline sends one NOTIFY per message, as HAProxy does for concurrent
// requests, and returns their ACKs in the order of msgs, whatever order the
// agent answered in. It keeps up to MaxInFlight NOTIFYs unanswered (one
// without pipelining), the first ones in a single write.
func (c *Client) Pipeline(msgs ...Message) ([]*Ack, error) {
	window := MaxInFlight
	if !c.pipelining {
		window = 1
	}
	acks := make([]*Ack, len(msgs))
	index := make(map[ID]int, window)
	mine := func(id ID) bool { _, ok := index[id]; return ok }
	var buf []byte
	next := 0
	for done := 0; done < len(msgs); done++ {
		buf = buf[:0]
		for ; next < len(msgs) && len(index) < window; next++ {
			var id ID
			var err error
			if id, buf, err = c.prepare(buf, msgs[next:next+1]); err != nil {
				return nil, err
			}
			index[id] = next
		}
		if len(buf) > 0 {
			if err := c.write(buf); err != nil {
				return nil, err
			}
		}
		a, err := c.waitFor(mine)
		if err != nil {
			return nil, err
		}
		acks[index[a.ID]] = a
		delete(index, a.ID)
	}
	return acks, nil
}

// Recv returns the next ACK: one that Notify or Pipeline read while waiting
// for another, or the next from the connection.
func (c *Client) Recv() (*Ack, error) {
	return c.waitFor(func(ID) bool { return true })
}

// Disconnect ends the connection as HAProxy 2.6 does: it sends a
// HAPROXY-DISCONNECT with status 0, reads until the agent's AGENT-DISCONNECT
// (dropping ACKs still in flight), and closes. It returns nil if the agent
// answered with status 0, else a *DisconnectError or the failure.
func (c *Client) Disconnect() error {
	defer c.Close()
	err := c.write(codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusNormal, "normal"))
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for err == nil {
		_, err = c.readAck()
	}
	var de *DisconnectError
	if errors.As(err, &de) && de.Status == codec.StatusNormal {
		return nil
	}
	return err
}

// Close closes the connection at once, as HAProxy 3.1+ does with idle
// connections; the Client's methods then return ErrClosed. It is safe to
// call more than once.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = ErrClosed
		c.mu.Unlock()
		err = c.nc.Close()
	})
	return err
}

// prepare picks the next ids for a NOTIFY of msgs, registers them as
// outstanding and appends the NOTIFY's frames to dst.
func (c *Client) prepare(dst []byte, msgs []Message) (ID, []byte, error) {
	payload, err := appendNotify(nil, msgs)
	if err != nil {
		return ID{}, dst, err
	}
	c.mu.Lock()
	switch {
	case c.err != nil:
		err = c.err
	case !c.pipelining && len(c.outstanding) > 0:
		err = errors.New("spoetest: pipelining was not negotiated: one NOTIFY at a time")
	}
	if err != nil {
		c.mu.Unlock()
		return ID{}, dst, err
	}
	id := ID{StreamID: c.nextSID, FrameID: 1}
	c.nextSID += 2
	c.outstanding[id] = struct{}{}
	c.mu.Unlock()
	if dst, err = c.appendNotifyFrames(dst, id, payload); err != nil {
		c.mu.Lock()
		delete(c.outstanding, id)
		c.mu.Unlock()
		return ID{}, dst, err
	}
	return id, dst, nil
}

// appendNotifyFrames appends the NOTIFY id with payload, in fragments if it
// does not fit one frame and fragmentation was negotiated.
func (c *Client) appendNotifyFrames(dst []byte, id ID, payload []byte) ([]byte, error) {
	h := codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: id.StreamID, FrameID: id.FrameID}
	hdrLen := 1 + 4 + codec.VarintLen(id.StreamID) + codec.VarintLen(id.FrameID)
	limit := int(c.hello.MaxFrameSize)
	if hdrLen+len(payload) <= limit {
		return codec.AppendFrame(dst, h, payload), nil
	}
	if !c.fragmentation {
		return dst, fmt.Errorf("spoetest: a NOTIFY of LENGTH %d exceeds the max-frame-size %d and fragmentation was not negotiated: %w",
			hdrLen+len(payload), limit, codec.ErrFrameTooBig)
	}
	// The first fragment is a NOTIFY without FIN, the others type-0 frames
	// with the same ids; the last has FIN.
	for room := limit - hdrLen; len(payload) > 0; h.Type = codec.FrameUnset {
		n := min(room, len(payload))
		h.Flags = 0
		if n == len(payload) {
			h.Flags = codec.FlagFin
		}
		dst = codec.AppendFrame(dst, h, payload[:n])
		payload = payload[n:]
	}
	return dst, nil
}

// waitFor returns the first ACK, pending or read, whose ids want accepts;
// the others it reads are kept for later.
func (c *Client) waitFor(want func(ID) bool) (*Ack, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for i, a := range c.pending {
		if want(a.ID) {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return a, nil
		}
	}
	for {
		a, err := c.readAck()
		if err != nil {
			return nil, err
		}
		if want(a.ID) {
			return a, nil
		}
		c.pending = append(c.pending, a)
	}
}

// readAck reads one frame, which must be an ACK answering an outstanding
// NOTIFY. The caller holds rmu.
func (c *Client) readAck() (*Ack, error) {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	limit := c.hello.MaxFrameSize
	if c.cfg.style == HAProxy32 {
		limit-- // 3.2.0 never processes an ACK of exactly max-frame-size
	}
	f, err := c.readFrame(limit)
	if err != nil {
		return nil, c.fail(err)
	}
	switch f.Type {
	case codec.FrameAck:
	case codec.FrameAgentDisconnect:
		return nil, c.fail(disconnectError(f.Payload))
	default:
		return nil, c.fail(fmt.Errorf("spoetest: expected ACK, got %v: %w", f.Type, codec.ErrUnexpectedFrame))
	}
	if !f.Flags.Fin() {
		return nil, c.fail(fmt.Errorf("spoetest: ACK without FIN (agents must not fragment): %w", codec.ErrFragmentation))
	}
	id := ID{StreamID: f.StreamID, FrameID: f.FrameID}
	c.mu.Lock()
	_, ok := c.outstanding[id]
	delete(c.outstanding, id)
	c.mu.Unlock()
	if !ok {
		return nil, c.fail(fmt.Errorf("spoetest: ACK %d/%d answers no NOTIFY in flight: %w", id.StreamID, id.FrameID, codec.ErrUnexpectedFrame))
	}
	acts, err := decodeActions(f.Payload)
	if err != nil {
		return nil, c.fail(fmt.Errorf("spoetest: ACK %d/%d: %w", id.StreamID, id.FrameID, err))
	}
	return &Ack{ID: id, Actions: acts, Aborted: f.Flags.Abort()}, nil
}

// readFrame reads one frame of LENGTH at most limit into a new buffer,
// which the frame's payload aliases.
func (c *Client) readFrame(limit uint32) (codec.Frame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.timeout))
	var prefix [codec.LengthPrefixLen]byte
	if _, err := io.ReadFull(c.nc, prefix[:]); err != nil {
		return codec.Frame{}, fmt.Errorf("spoetest: reading a frame: %w", err)
	}
	n, err := codec.ParseLength(prefix[:], limit)
	if err != nil {
		return codec.Frame{}, fmt.Errorf("spoetest: frame LENGTH %d (limit %d): %w", binary.BigEndian.Uint32(prefix[:]), limit, err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.nc, b); err != nil {
		return codec.Frame{}, fmt.Errorf("spoetest: reading a frame of LENGTH %d: %w", n, err)
	}
	f, err := codec.ParseFrame(b)
	if err != nil {
		return codec.Frame{}, fmt.Errorf("spoetest: frame header: %w", err)
	}
	return f, nil
}

// write writes b in one call, within the timeout.
func (c *Client) write(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.timeout))
	if _, err := c.nc.Write(b); err != nil {
		return c.fail(fmt.Errorf("spoetest: writing: %w", err))
	}
	return nil
}

// fail records err as the connection's failure, unless one is recorded
// already, and returns it. A Healthcheck's Client has no outstanding map
// and records nothing.
func (c *Client) fail(err error) error {
	if c.outstanding == nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	return err
}
