// Package observe declares the hooks through which an agent reports what it
// does, for metrics and tracing. The agent calls them from its hot path, so
// implementations must be safe for concurrent use, fast, and allocation-free
// in steady state. Package metrics implements Observer with Prometheus; Nop
// is the default.
//
// To write your own, embed Nop and define the methods of the events you
// want: events added to Observer later then do nothing for your type
// instead of breaking its build.
package observe

import (
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// End says how a connection ended.
type End uint8

// The ways a connection ends.
const (
	EndNormal         End = iota // the peer closed at a frame boundary (FIN or RST)
	EndHealthcheck               // a health check, answered
	EndPeerDisconnect            // HAProxy sent HAPROXY-DISCONNECT
	EndShutdown                  // the agent drained it
	EndProtocolError             // the agent sent AGENT-DISCONNECT for a protocol error
	EndIOError                   // a read or write failed, or the peer left mid-frame
	endCount
)

var endNames = [...]string{"normal", "healthcheck", "peer_disconnect", "shutdown", "protocol_error", "io_error"}

// String returns the end's label ("normal", "protocol_error", ...).
func (e End) String() string {
	if e < endCount {
		return endNames[e]
	}
	return "unknown"
}

// Ends lists every End, for pre-registering label values.
func Ends() []End {
	e := make([]End, endCount)
	for i := range e {
		e[i] = End(i)
	}
	return e
}

// Refusal says why a connection was refused before any byte was read.
type Refusal uint8

// The reasons a connection is refused.
const (
	RefusedNotAllowed Refusal = iota // its source address is outside the allowlist
	RefusedLimit                     // the agent's connection limit was reached
	refusalCount
)

var refusalNames = [...]string{"not_allowed", "limit"}

// String returns the refusal's label ("not_allowed", "limit").
func (r Refusal) String() string {
	if r < refusalCount {
		return refusalNames[r]
	}
	return "unknown"
}

// Refusals lists every Refusal, for pre-registering label values.
func Refusals() []Refusal {
	r := make([]Refusal, refusalCount)
	for i := range r {
		r[i] = Refusal(i)
	}
	return r
}

// Observer receives an agent's events.
//
// New events may be added to Observer in minor releases: an implementation
// embeds Nop, and defines only the methods of the events it wants, so that
// it keeps compiling when a method is added (the added event does nothing
// for it until it defines the method). See the Example.
type Observer interface {
	// ConnOpened: a connection was accepted.
	ConnOpened()
	// ConnClosed: a connection ended; status is what its AGENT-DISCONNECT
	// said (StatusNormal when none was sent).
	ConnClosed(end End, status codec.Status)
	// Hello: a HELLO was answered.
	Hello(healthcheck bool)
	// FrameIn and FrameOut: one frame of the type, LENGTH bytes (the
	// 4-byte prefix not included), was received or queued for sending.
	FrameIn(t codec.FrameType, length int)
	FrameOut(t codec.FrameType, length int)
	// DisconnectReceived and DisconnectSent: a DISCONNECT frame's status.
	DisconnectReceived(status codec.Status)
	DisconnectSent(status codec.Status)
	// Reassembled: a fragmented NOTIFY of that many frames was put together.
	Reassembled(frames int)
	// Message: one message was handled. name is the registered message name
	// ("" for the fallback handler), took the handler's time, code the
	// error code set (0 for success; see the agent's ErrCode constants).
	Message(name string, took time.Duration, code int)
	// ConnRefused: a connection was closed right after accept, before the
	// agent read anything from it.
	ConnRefused(why Refusal)
	// TLSHandshake: a TLS handshake ended, successfully when err is nil.
	// A connection whose handshake failed is never opened (ConnOpened).
	TLSHandshake(err error)
	// Answered: a NOTIFY's ACK is built and about to be handed to its
	// connection for writing (so the event comes before HAProxy can have
	// the ACK). took runs from the read of the NOTIFY (of its last
	// fragment) to then: the figure to compare with HAProxy's "timeout
	// processing". code is the error code the ACK carries (0 for none,
	// whether or not an error variable is configured; see the
	// spoe.ErrCode constants): the first failure among its messages'
	// handlers, or a failure of the whole NOTIFY (actions invalid or too
	// large for one frame, or the deadline passed and the agent answered
	// without its handlers' actions). A NOTIFY that the closing agent
	// answers without running its handlers is reported with code 0.
	Answered(took time.Duration, code int)
}

// Nop is an Observer that does nothing.
type Nop struct{}

// ConnOpened implements Observer.
func (Nop) ConnOpened() {}

// ConnClosed implements Observer.
func (Nop) ConnClosed(End, codec.Status) {}

// Hello implements Observer.
func (Nop) Hello(bool) {}

// FrameIn implements Observer.
func (Nop) FrameIn(codec.FrameType, int) {}

// FrameOut implements Observer.
func (Nop) FrameOut(codec.FrameType, int) {}

// DisconnectReceived implements Observer.
func (Nop) DisconnectReceived(codec.Status) {}

// DisconnectSent implements Observer.
func (Nop) DisconnectSent(codec.Status) {}

// Reassembled implements Observer.
func (Nop) Reassembled(int) {}

// Message implements Observer.
func (Nop) Message(string, time.Duration, int) {}

// ConnRefused implements Observer.
func (Nop) ConnRefused(Refusal) {}

// TLSHandshake implements Observer.
func (Nop) TLSHandshake(error) {}

// Answered implements Observer.
func (Nop) Answered(time.Duration, int) {}
