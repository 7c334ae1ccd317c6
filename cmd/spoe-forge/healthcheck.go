package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// checkOffer is the max-frame-size HAProxy offers in its health check
// (tune.bufsize - 4 with default buffers): the AGENT-HELLO must answer
// between codec.MinMaxFrameSize and it.
const checkOffer = codec.DefaultMaxFrameSize

// checkHello is the HAPROXY-HELLO of "option spop-check", byte for byte
// (spop.md §2.3): LENGTH 78, FIN, ids 0/0, supported-versions "2.0",
// max-frame-size 16380, capabilities "" and healthcheck true, no engine-id.
var checkHello = codec.AppendHAProxyHello(nil, &codec.HAProxyHello{
	MaxFrameSize:    checkOffer,
	RawCapabilities: []byte{},
	Healthcheck:     true,
})

// healthcheckFlags holds the parsed command line of "spoe-forge healthcheck".
type healthcheckFlags struct {
	target
	quiet bool
}

func newHealthcheckFlagSet(f *healthcheckFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("spoe-forge healthcheck", flag.ContinueOnError)
	f.register(fs, "bound on the whole check: connect, HELLO, AGENT-HELLO")
	fs.BoolVar(&f.quiet, "quiet", false, "print nothing; only the exit status tells")
	return fs
}

// check returns what is wrong with the parsed flags and the arguments left
// after them, or "".
func (f *healthcheckFlags) check(rest []string) string {
	if len(rest) > 0 {
		return fmt.Sprintf("unexpected argument %q", rest[0])
	}
	return f.target.check()
}

// runHealthcheck runs "spoe-forge healthcheck args..." and returns the exit
// status.
func runHealthcheck(args []string, stdout, stderr io.Writer) int {
	var f healthcheckFlags
	bad, help := parseFlags(newHealthcheckFlagSet(&f), args, f.check)
	if help {
		healthcheckUsage(stdout)
		return exitHealthy
	}
	if bad != "" {
		fmt.Fprintf(stderr, "spoe-forge healthcheck: %s\nRun \"spoe-forge healthcheck --help\" for usage.\n", bad)
		return exitUsage
	}

	addr := f.addr()
	res, err := check(&f.target)
	if err != nil {
		if !f.quiet {
			fmt.Fprintf(stderr, "unhealthy: %s: %v\n", addr, err)
		}
		return exitUnhealthy
	}
	if !f.quiet {
		over := ""
		if res.tls != "" {
			over = ", over " + res.tls
		}
		fmt.Fprintf(stdout, "healthy: %s answered version %s, max-frame-size %d, capabilities %q%s\n",
			addr, printable(res.version), res.maxFrameSize, res.capabilities, over)
	}
	return exitHealthy
}

// healthcheckUsage prints the help of the healthcheck subcommand.
func healthcheckUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: spoe-forge healthcheck [--host H] [--port P | --unix PATH] [--timeout D] [TLS flags] [--quiet]

Connects to an SPOE agent, sends the health-check HAPROXY-HELLO of HAProxy's
"option spop-check" and checks the AGENT-HELLO as HAProxy 3.2 does: frame type
101, FLAGS exactly FIN, stream-id and frame-id 0, version 2.0, max-frame-size
within 256..16380 and a capabilities item.

Exit status: 0 healthy, 1 unhealthy, 2 bad usage.

`+transportHelp+`
Flags:
`)
	var f healthcheckFlags
	printFlags(w, newHealthcheckFlagSet(&f))
}

// result is what a healthy agent negotiated.
type result struct {
	tls          string // the TLS version, "" for plain text
	version      []byte
	maxFrameSize uint32
	capabilities string // the raw item, as the agent wrote it
}

// check runs one health check against the target, all of it (connect,
// HELLO, AGENT-HELLO) within its timeout. The error says, for a human, why
// the agent is not healthy.
func check(t *target) (*result, error) {
	timeout := t.timeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	c, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("setting the deadline: %v", err)
	}
	if _, err := c.Write(checkHello); err != nil {
		return nil, fmt.Errorf("sending the HAPROXY-HELLO: %v", describeIOError(err, timeout))
	}
	frame, err := readFrame(c, deadline, timeout)
	if err != nil {
		return nil, err
	}
	res, err := validate(frame)
	if err != nil {
		return nil, err
	}
	res.tls = tlsVersion(c)
	return res, nil
}

// readFrame reads the first frame the agent sends, as HAProxy's check does:
// a length prefix within MinFrameLen..checkOffer, then that many bytes. The
// connection's deadline is already set; timeout is only reported.
func readFrame(c net.Conn, deadline time.Time, timeout time.Duration) ([]byte, error) {
	var prefix [codec.LengthPrefixLen]byte
	if n, err := io.ReadFull(c, prefix[:]); err != nil {
		switch {
		case n == 0 && errors.Is(err, io.EOF):
			return nil, errors.New("the agent closed the connection without answering the HAPROXY-HELLO")
		case n == 0:
			return nil, fmt.Errorf("no AGENT-HELLO: %v", describeIOError(err, timeout))
		default:
			return nil, fmt.Errorf("the answer stopped after %d bytes, inside a length prefix: %v", n, describeIOError(err, timeout))
		}
	}
	length, err := codec.ParseLength(prefix[:], checkOffer)
	if err != nil {
		return nil, fmt.Errorf("the answer is not an SPOP frame (LENGTH %d is outside %d..%d)%s",
			binary.BigEndian.Uint32(prefix[:]), codec.MinFrameLen, checkOffer, snippet(c, prefix[:], deadline))
	}
	frame := make([]byte, length) // bounded by checkOffer
	if n, err := io.ReadFull(c, frame); err != nil {
		return nil, fmt.Errorf("the answer stopped after %d of the %d bytes its LENGTH announced: %v", n, length, describeIOError(err, timeout))
	}
	return frame, nil
}

// validate checks the agent's frame as HAProxy 3.2's tcpcheck_spop_expect_hello
// does (spop.md §9).
func validate(frame []byte) (*result, error) {
	f, err := codec.ParseFrame(frame)
	if err != nil {
		return nil, fmt.Errorf("malformed frame header: %v", err)
	}
	switch f.Type {
	case codec.FrameAgentHello:
	case codec.FrameAgentDisconnect, codec.FrameHAProxyDisconnect:
		who := "an AGENT-DISCONNECT"
		if f.Type == codec.FrameHAProxyDisconnect {
			who = "a HAPROXY-DISCONNECT frame (type 2, which only HAProxy sends)"
		}
		return nil, fmt.Errorf("the agent answered %s instead of an AGENT-HELLO: %s", who, describeDisconnect(f.Payload))
	default:
		return nil, fmt.Errorf("the agent answered a frame of type %d (%v) instead of an AGENT-HELLO (type %d)",
			uint8(f.Type), f.Type, uint8(codec.FrameAgentHello))
	}
	if f.Flags != codec.FlagFin {
		return nil, fmt.Errorf("AGENT-HELLO FLAGS are 0x%08x; HAProxy 3.2 requires exactly 0x%08x (FIN)", uint32(f.Flags), uint32(codec.FlagFin))
	}
	if f.StreamID != 0 || f.FrameID != 0 {
		return nil, fmt.Errorf("AGENT-HELLO has stream-id %d and frame-id %d; both must be 0", f.StreamID, f.FrameID)
	}
	var h codec.AgentHello
	if err := h.Decode(f.Payload); err != nil {
		return nil, fmt.Errorf("malformed AGENT-HELLO payload: %v", err)
	}
	if err := h.Validate(checkOffer); err != nil {
		switch {
		case errors.Is(err, codec.ErrNoVersion):
			return nil, errors.New(`AGENT-HELLO has no "version" item`)
		case errors.Is(err, codec.ErrUnsupportedVersion):
			return nil, fmt.Errorf("AGENT-HELLO version %q is not 2.0", h.Version)
		case errors.Is(err, codec.ErrNoFrameSize):
			return nil, errors.New(`AGENT-HELLO has no "max-frame-size" item`)
		case errors.Is(err, codec.ErrBadFrameSize):
			return nil, fmt.Errorf("AGENT-HELLO max-frame-size %d is outside %d..%d", h.MaxFrameSize, codec.MinMaxFrameSize, checkOffer)
		case errors.Is(err, codec.ErrNoCapabilities):
			return nil, errors.New(`AGENT-HELLO has no "capabilities" item (HAProxy 3.1+ health checks require it, even empty)`)
		default:
			return nil, fmt.Errorf("unacceptable AGENT-HELLO: %v", err)
		}
	}
	return &result{
		version:      h.Version,
		maxFrameSize: h.MaxFrameSize,
		capabilities: string(rawItem(f.Payload, "capabilities")),
	}, nil
}

// describeDisconnect renders a DISCONNECT payload: its status and message.
func describeDisconnect(payload []byte) string {
	var d codec.Disconnect
	if err := d.Decode(payload); err != nil {
		return fmt.Sprintf("its payload is malformed (%v)", err)
	}
	s := "no status-code"
	if d.HasStatus {
		s = fmt.Sprintf("status %d (%v)", uint32(d.Status), d.Status)
	}
	if d.Message == nil {
		return s + ", no message"
	}
	msg := d.Message
	if len(msg) > codec.MaxDisconnectMessageLen {
		msg = msg[:codec.MaxDisconnectMessageLen]
	}
	return fmt.Sprintf("%s, message %q", s, msg)
}

// rawItem returns the bytes of the STRING or BINARY item name of a KV-LIST
// that has already been decoded successfully.
func rawItem(payload []byte, name string) []byte {
	for len(payload) > 0 {
		kv, n, err := codec.NextKV(payload)
		if err != nil {
			return nil
		}
		payload = payload[n:]
		if string(kv.Name) == name {
			b, _ := kv.Value.Bytes()
			return b
		}
	}
	return nil
}

// snippet reads whatever else the peer has already sent (briefly) and
// renders the start of its answer, for a peer that is not an agent at all:
// an HTTP server answers `"HTTP/1.1 400 Bad Request"`.
func snippet(c net.Conn, head []byte, deadline time.Time) string {
	buf := make([]byte, 64)
	n := copy(buf, head)
	if soon := time.Now().Add(100 * time.Millisecond); soon.Before(deadline) {
		_ = c.SetReadDeadline(soon)
	}
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
	}
	text := string(buf[:n])
	if i := strings.IndexAny(text, "\r\n"); i >= 0 {
		text = text[:i]
	}
	return fmt.Sprintf(": it starts with %q", text)
}

// printable returns b as is when it is plain text without spaces, else
// quoted, so that a version such as " 2.0 " is visible as such.
func printable(b []byte) string {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '"' {
			return strconv.Quote(string(b))
		}
	}
	return string(b)
}
