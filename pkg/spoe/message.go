package spoe

import (
	"net/netip"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Message is one SPOE message of a NOTIFY, as a handler sees it: its name
// and its arguments, read by name with typed accessors. Every accessor
// returns an ok flag and never panics; a missing header or a sample HAProxy
// could not fetch arrives as NULL.
//
// A Message, and every []byte obtained from it, is valid only until the
// handler returns: it aliases the frame, which is reused afterwards. Copy what
// must outlive the handler; String already returns a copy.
type Message struct {
	name     string
	m        *codec.Message
	streamID uint64
	frameID  uint64
	engineID string
}

// Name returns the message's name, as in the spoe-message section.
func (m *Message) Name() string {
	if m.name == "" && m.m != nil {
		return string(m.m.Name)
	}
	return m.name
}

// Arg returns the first argument called name. Names in the spoe-message
// "args" line need not be unique, and an argument given without "name="
// has the empty name.
func (m *Message) Arg(name string) (codec.Value, bool) {
	if m.m == nil {
		return codec.Value{}, false
	}
	return m.m.Arg(name)
}

// Args returns every argument in the order HAProxy sent them. The slice is
// the message's own: do not modify or keep it.
func (m *Message) Args() []codec.Arg {
	if m.m == nil {
		return nil
	}
	return m.m.Args
}

// String returns a copy of a STRING or BINARY argument. ok is false when the
// argument is missing or of another type (a missing header arrives as NULL).
func (m *Message) String(name string) (string, bool) {
	v, ok := m.Arg(name)
	if !ok {
		return "", false
	}
	return v.String()
}

// Bytes returns a STRING or BINARY argument without copying; the slice is
// valid until the handler returns.
func (m *Message) Bytes(name string) ([]byte, bool) {
	v, ok := m.Arg(name)
	if !ok {
		return nil, false
	}
	return v.Bytes()
}

// Int returns an integer argument (HAProxy sends every integer as INT64).
func (m *Message) Int(name string) (int64, bool) {
	v, ok := m.Arg(name)
	if !ok {
		return 0, false
	}
	return v.Int()
}

// Bool returns a BOOL argument.
func (m *Message) Bool(name string) (bool, bool) {
	v, ok := m.Arg(name)
	if !ok {
		return false, false
	}
	return v.Bool()
}

// IP returns an IPV4 or IPV6 argument, such as src.
func (m *Message) IP(name string) (netip.Addr, bool) {
	v, ok := m.Arg(name)
	if !ok {
		return netip.Addr{}, false
	}
	return v.Addr()
}

// Headers returns a STRING or BINARY argument as an HTTP header block in
// HAProxy's binary form, as "args headers=req.hdrs_bin" (or res.hdrs_bin)
// sends it; look headers up with its Get and Iter methods, which allocate
// nothing. ok is false when the argument is missing or of another type
// (NULL when HAProxy could not fetch the headers). The block is not checked
// here: codec.Headers.Validate reports a malformed one. Like Bytes, it is
// valid until the handler returns.
func (m *Message) Headers(name string) (codec.Headers, bool) {
	b, ok := m.Bytes(name)
	if !ok {
		return nil, false
	}
	return codec.Headers(b), true
}

// IsNull reports whether the argument is present and NULL, as HAProxy sends
// a sample that could not be fetched (a missing header, for instance).
func (m *Message) IsNull(name string) bool {
	v, ok := m.Arg(name)
	return ok && v.IsNull()
}

// Has reports whether an argument called name is present.
func (m *Message) Has(name string) bool {
	_, ok := m.Arg(name)
	return ok
}

// StreamID and FrameID return the NOTIFY's identifiers. They are opaque: on
// HAProxy 3.1+ they are per connection and do not tie request and response
// events of one transaction together (pass your own id as an argument).
func (m *Message) StreamID() uint64 { return m.streamID }

// FrameID returns the NOTIFY's frame-id; see StreamID.
func (m *Message) FrameID() uint64 { return m.frameID }

// EngineID returns the engine-id of the HAProxy that sent the message (empty
// if it sent none).
func (m *Message) EngineID() string { return m.engineID }

// NewMessage wraps a decoded message, for tests and tools that call handlers
// directly (pkg/spoetest builds one from arguments).
func NewMessage(name string, m *codec.Message) *Message {
	return &Message{name: name, m: m}
}
