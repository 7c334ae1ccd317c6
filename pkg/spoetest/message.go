package spoetest

import (
	"fmt"
	"net/netip"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Message is one SPOE message to send: its name, as in a spoe-message
// section, and its arguments in order, as the section's "args" line gives
// them. Build it with NewMessage and the argument constructors (Str, Int,
// IP, ...).
type Message struct {
	Name string
	Args []agent.Arg
}

// NewMessage returns the message name with args.
func NewMessage(name string, args ...agent.Arg) Message {
	return Message{Name: name, Args: args}
}

// Arg returns an argument of any type, for values the other constructors do
// not cover (codec.Uint32, codec.BinaryString, ...).
func Arg(name string, v agent.Value) agent.Arg {
	return agent.Arg{Name: []byte(name), Value: v}
}

// Str returns a STRING argument, as HAProxy sends a path, a header or the
// method.
func Str(name, value string) agent.Arg { return Arg(name, codec.String(value)) }

// Bin returns a BINARY argument, as HAProxy sends req.body. The argument
// aliases value until the message is encoded (by Call or a Client).
func Bin(name string, value []byte) agent.Arg { return Arg(name, codec.Binary(value)) }

// Int returns an INT64 argument: HAProxy sends every integer sample as
// INT64.
func Int(name string, value int64) agent.Arg { return Arg(name, codec.Int64(value)) }

// Bool returns a BOOL argument.
func Bool(name string, value bool) agent.Arg { return Arg(name, codec.Bool(value)) }

// Addr returns an IPV4 argument for an IPv4 (or IPv4-mapped IPv6) address
// and an IPV6 argument otherwise, as HAProxy sends src.
func Addr(name string, value netip.Addr) agent.Arg { return Arg(name, codec.Addr(value)) }

// IP is Addr for an address written as text ("192.0.2.1", "2001:db8::1").
// Like netip.MustParseAddr, it panics if addr is not a valid address: it is
// meant for literals in tests.
func IP(name, addr string) agent.Arg {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		panic(fmt.Sprintf("spoetest.IP(%q, %q): %v", name, addr, err))
	}
	return Addr(name, a)
}

// Null returns a NULL argument, as HAProxy sends a sample it could not
// fetch (a missing header, for instance).
func Null(name string) agent.Arg { return Arg(name, codec.Null()) }

// Headers returns a BINARY argument holding an HTTP header block in
// HAProxy's binary form, as "args headers=req.hdrs_bin" sends it; a
// handler reads it with Message.Headers. nameValues are header names and
// values in turn, in order, and may repeat a name. HAProxy sends names in
// lower case. Like IP, it panics on an odd number of strings or an empty
// name: it is meant for literals in tests.
func Headers(name string, nameValues ...string) agent.Arg {
	if len(nameValues)%2 != 0 {
		panic(fmt.Sprintf("spoetest.Headers(%q): %d strings; want name, value pairs", name, len(nameValues)))
	}
	var b []byte
	for i := 0; i < len(nameValues); i += 2 {
		if nameValues[i] == "" {
			panic(fmt.Sprintf("spoetest.Headers(%q): header %d has an empty name, which would end the block", name, i/2))
		}
		b = codec.AppendHeaderPair(b, nameValues[i], nameValues[i+1])
	}
	return Bin(name, codec.AppendHeadersEnd(b))
}

// appendNotify appends the NOTIFY payload (the list of messages) of msgs.
func appendNotify(dst []byte, msgs []Message) ([]byte, error) {
	for i := range msgs {
		var err error
		if dst, err = codec.AppendMessage(dst, msgs[i].Name, msgs[i].Args...); err != nil {
			return dst, fmt.Errorf("spoetest: message %q: %w", msgs[i].Name, err)
		}
	}
	return dst, nil
}
