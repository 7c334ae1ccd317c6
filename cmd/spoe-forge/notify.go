package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
)

// Exit statuses of notify: the same numbers as healthcheck's.
const (
	exitAck    = 0 // the agent answered the NOTIFY with an ACK
	exitFailed = 1 // it did not: refused, timeout, DISCONNECT, malformed answer
)

// maxOffer bounds --max-frame-size: the client reads frames up to the
// offer into memory.
const maxOffer = 16 << 20

// argTypes maps the type names of --arg to SPOP types. "hex" is a BINARY
// given in hexadecimal; "string" and "binary" are the codec's own names.
var argTypes = map[string]codec.Type{
	"null": codec.TypeNull, "bool": codec.TypeBool,
	"int32": codec.TypeInt32, "uint32": codec.TypeUint32, "int64": codec.TypeInt64, "uint64": codec.TypeUint64,
	"ipv4": codec.TypeIPv4, "ipv6": codec.TypeIPv6,
	"str": codec.TypeString, "string": codec.TypeString,
	"bin": codec.TypeBinary, "binary": codec.TypeBinary, "hex": codec.TypeBinary,
}

// typeList is the list of types printed in errors.
const typeList = "null, bool, int32, uint32, int64, uint64, ipv4, ipv6, str, bin, hex"

// shortTypes are the type names notify prints, the ones --arg reads.
var shortTypes = [...]string{"null", "bool", "int32", "uint32", "int64", "uint64", "ipv4", "ipv6", "str", "bin"}

// typeName returns the short name of t ("str", "int64").
func typeName(t codec.Type) string {
	if int(t) < len(shortTypes) {
		return shortTypes[t]
	}
	return t.String()
}

// notifyFlags holds the parsed command line of "spoe-forge notify".
type notifyFlags struct {
	target
	msgs         messages
	maxFrameSize uint
	caps         string
	capsSet      bool
	styleName    string
	style        spoetest.Style
	json         bool
}

// messages collects the --message and --arg flags, in order: each --arg
// belongs to the --message before it.
type messages struct {
	list      []spoetest.Message
	stdin     io.Reader // what "-" reads; nil when there is none
	stdinUsed bool
}

// messageFlag is the flag.Value of --message: it starts a message.
type messageFlag struct{ m *messages }

func (f messageFlag) String() string { return "" }

func (f messageFlag) Set(name string) error {
	if name == "" {
		return errors.New("a message name must not be empty")
	}
	f.m.list = append(f.m.list, spoetest.NewMessage(name))
	return nil
}

// argFlag is the flag.Value of --arg: it adds an argument to the last
// message.
type argFlag struct{ m *messages }

func (f argFlag) String() string { return "" }

func (f argFlag) Set(spec string) error {
	if len(f.m.list) == 0 {
		return errors.New("it comes before any --message: give the message's name first")
	}
	last := &f.m.list[len(f.m.list)-1]
	if len(last.Args) == 255 {
		return fmt.Errorf("message %q already has 255 arguments, the most SPOP allows", last.Name)
	}
	name, val, ok := strings.Cut(spec, "=")
	if !ok {
		return errors.New("want NAME=TYPE:VALUE, NAME=TYPE@FILE, NAME=null, NAME=@FILE or NAME=-")
	}
	v, err := f.m.value(val)
	if err != nil {
		return err
	}
	last.Args = append(last.Args, spoetest.Arg(name, v))
	return nil
}

// value parses the part of an --arg after "=".
func (m *messages) value(s string) (codec.Value, error) {
	switch {
	case s == "null":
		return codec.Null(), nil
	case s == "-":
		return m.read("bin", "-")
	case strings.HasPrefix(s, "@"):
		return m.read("bin", s[1:])
	}
	i := strings.IndexAny(s, ":@")
	if i < 0 {
		return codec.Value{}, fmt.Errorf("%q has no type: write TYPE:VALUE, with TYPE one of %s", s, typeList)
	}
	name, sep, text := s[:i], s[i], s[i+1:]
	t, ok := argTypes[name]
	if !ok {
		return codec.Value{}, fmt.Errorf("unknown type %q: want one of %s", name, typeList)
	}
	if sep == '@' {
		if t != codec.TypeString && t != codec.TypeBinary {
			return codec.Value{}, fmt.Errorf("%s@FILE: only str, bin and hex values can be read from a file", name)
		}
		return m.read(name, text)
	}
	return parseValue(name, t, text)
}

// parseValue parses text as a value of type t, named name on the command
// line.
func parseValue(name string, t codec.Type, text string) (codec.Value, error) {
	bad := func(what string) (codec.Value, error) {
		return codec.Value{}, fmt.Errorf("%q is not %s", text, what)
	}
	switch t {
	case codec.TypeNull:
		return bad("empty: write null alone, without a value")
	case codec.TypeBool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return bad("a bool (true or false)")
		}
		return codec.Bool(b), nil
	case codec.TypeInt32:
		n, err := strconv.ParseInt(text, 10, 32)
		if err != nil {
			return bad("an int32 (-2147483648..2147483647)")
		}
		return codec.Int32(int32(n)), nil
	case codec.TypeUint32:
		n, err := strconv.ParseUint(text, 10, 32)
		if err != nil {
			return bad("a uint32 (0..4294967295)")
		}
		return codec.Uint32(uint32(n)), nil
	case codec.TypeInt64:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return bad("an int64")
		}
		return codec.Int64(n), nil
	case codec.TypeUint64:
		n, err := strconv.ParseUint(text, 10, 64)
		if err != nil {
			return bad("a uint64")
		}
		return codec.Uint64(n), nil
	case codec.TypeIPv4:
		a, err := netip.ParseAddr(text)
		if err != nil || !a.Is4() {
			return bad("an IPv4 address")
		}
		return codec.Addr(a), nil
	case codec.TypeIPv6:
		a, err := netip.ParseAddr(text)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return bad("an IPv6 address (without zone; an IPv4-mapped address is sent as ipv4)")
		}
		return codec.Addr(a), nil
	case codec.TypeString:
		return codec.String(text), nil
	}
	if name == "hex" {
		b, err := hex.DecodeString(strings.Join(strings.Fields(text), ""))
		if err != nil {
			return bad("hexadecimal")
		}
		return codec.Binary(b), nil
	}
	return codec.BinaryString(text), nil
}

// read reads a str, bin or hex value from file, or from the standard input
// when file is "-" (once).
func (m *messages) read(name, file string) (codec.Value, error) {
	var b []byte
	var err error
	switch {
	case file == "":
		return codec.Value{}, errors.New("@ needs a file name (or - for the standard input)")
	case file == "-" && m.stdinUsed:
		return codec.Value{}, errors.New("the standard input (-) can be read only once")
	case file == "-" && m.stdin == nil:
		return codec.Value{}, errors.New("there is no standard input to read")
	case file == "-":
		m.stdinUsed = true
		if b, err = io.ReadAll(m.stdin); err != nil {
			return codec.Value{}, fmt.Errorf("reading the standard input: %v", err)
		}
	default:
		if b, err = os.ReadFile(file); err != nil {
			return codec.Value{}, err
		}
	}
	switch name {
	case "str", "string":
		return codec.StringBytes(b), nil
	case "hex":
		return parseValue(name, codec.TypeBinary, string(b))
	}
	return codec.Binary(b), nil
}

func newNotifyFlagSet(f *notifyFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("spoe-forge notify", flag.ContinueOnError)
	f.register(fs, "bound on the whole exchange: connect, HELLO, NOTIFY, ACK")
	fs.Var(messageFlag{&f.msgs}, "message", "start a message `name`d as a spoe-message section; repeat for several messages in the NOTIFY")
	fs.Var(argFlag{&f.msgs}, "arg", "add an argument to the last --message (see ARGUMENTS); repeat for each `name=value`")
	fs.UintVar(&f.maxFrameSize, "max-frame-size", codec.DefaultMaxFrameSize, "the max-frame-size the HELLO offers: 256..16777216 `bytes`")
	fs.StringVar(&f.caps, "capabilities", "", "the HELLO's capabilities `list`, as HAProxy writes it (\"\" for none; default: the --style's)")
	fs.StringVar(&f.styleName, "style", "3.2", "the HAProxy to play: `version` 3.2 (or 3.1) or 2.6 (or 3.0); see STYLES")
	fs.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	return fs
}

// check returns what is wrong with the parsed flags and the arguments left
// after them, or "".
func (f *notifyFlags) check(fs *flag.FlagSet, rest []string) string {
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "capabilities" {
			f.capsSet = true
		}
	})
	switch f.styleName {
	case "3.2", "3.1":
		f.style = spoetest.HAProxy32
	case "2.6", "3.0":
		f.style = spoetest.HAProxy26
	default:
		return fmt.Sprintf("--style %q: want 3.2 (also 3.1) or 2.6 (also 3.0)", f.styleName)
	}
	switch {
	case len(rest) > 0:
		return fmt.Sprintf("unexpected argument %q (arguments are given with --arg)", rest[0])
	case len(f.msgs.list) == 0:
		return "no --message: give at least one message to send"
	case f.maxFrameSize < codec.MinMaxFrameSize || f.maxFrameSize > maxOffer:
		return fmt.Sprintf("--max-frame-size %d is out of range %d..%d", f.maxFrameSize, codec.MinMaxFrameSize, maxOffer)
	}
	return f.target.check()
}

// runNotify runs "spoe-forge notify args..." and returns the exit status.
func runNotify(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := notifyFlags{msgs: messages{stdin: stdin}}
	fs := newNotifyFlagSet(&f)
	bad, help := parseFlags(fs, args, func(rest []string) string { return f.check(fs, rest) })
	if help {
		notifyUsage(stdout)
		return exitAck
	}
	if bad != "" {
		fmt.Fprintf(stderr, "spoe-forge notify: %s\nRun \"spoe-forge notify --help\" for usage.\n", bad)
		return exitUsage
	}
	res := notify(&f)
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(res)
	} else {
		res.printText(stdout)
	}
	if res.Error != "" {
		fmt.Fprintf(stderr, "failed: %s: %s\n", res.Agent, res.Error)
		return exitFailed
	}
	return exitAck
}

// notifyResult is what one exchange gave, in the shape of --json.
type notifyResult struct {
	Agent      string          `json:"agent"`
	TLS        string          `json:"tls,omitempty"` // the TLS version, when TLS is on
	OK         bool            `json:"ok"`
	Hello      *helloResult    `json:"hello,omitempty"`
	Ack        *ackResult      `json:"ack,omitempty"`
	Disconnect *disconnectInfo `json:"disconnect,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// helloResult is what the agent's AGENT-HELLO announced.
type helloResult struct {
	Version      string `json:"version"`
	MaxFrameSize uint32 `json:"max_frame_size"`
	Capabilities string `json:"capabilities"`
}

// ackResult is the agent's ACK.
type ackResult struct {
	StreamID uint64         `json:"stream_id"`
	FrameID  uint64         `json:"frame_id"`
	Aborted  bool           `json:"aborted"`
	Actions  []actionResult `json:"actions"`
}

// actionResult is one action of the ACK. Value is a JSON number, bool or
// string, or null; a bin value is in hexadecimal, and so is a str value
// that is not valid UTF-8 (in ValueHex instead of Value).
type actionResult struct {
	Action   string `json:"action"`
	Scope    string `json:"scope"`
	Name     string `json:"name"`
	Type     string `json:"type,omitempty"`
	Value    any    `json:"value,omitempty"`
	ValueHex string `json:"value_hex,omitempty"`

	text string // the line notify prints
}

// disconnectInfo is an AGENT-DISCONNECT the agent sent.
type disconnectInfo struct {
	Status  uint32 `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// notify runs the exchange: connect, HELLO, one NOTIFY with every message,
// its ACK; all of it within the timeout.
func notify(f *notifyFlags) *notifyResult {
	res := &notifyResult{Agent: f.addr()}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	nc, err := f.dial(ctx)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.TLS = tlsVersion(nc)
	opts := []spoetest.Option{
		spoetest.WithStyle(f.style),
		spoetest.WithMaxFrameSize(uint32(f.maxFrameSize)),
		spoetest.WithTimeout(f.timeout),
	}
	if f.capsSet {
		opts = append(opts, spoetest.WithCapabilities(f.caps))
	}
	c, err := spoetest.NewClient(&deadlineConn{Conn: nc, deadline: deadline}, opts...)
	if err != nil {
		res.fail(err, f.timeout, "the HAPROXY-HELLO", "AGENT-HELLO", "bad AGENT-HELLO")
		return res
	}
	defer c.Close()
	h := c.Hello()
	res.Hello = &helloResult{Version: h.Version, MaxFrameSize: h.MaxFrameSize, Capabilities: h.Capabilities.String()}

	if _, err := c.Send(f.msgs.list...); err != nil {
		if errors.Is(err, codec.ErrFrameTooBig) {
			res.Error = "the NOTIFY was not sent: " + trim(err)
			return res
		}
		res.fail(err, f.timeout, "the NOTIFY", "ACK", "sending the NOTIFY")
		return res
	}
	ack, err := c.Recv()
	if err != nil {
		res.fail(err, f.timeout, "the NOTIFY", "ACK", "bad answer to the NOTIFY")
		return res
	}
	res.Ack = &ackResult{StreamID: ack.StreamID, FrameID: ack.FrameID, Aborted: ack.Aborted, Actions: []actionResult{}}
	for _, a := range ack.Actions {
		res.Ack.Actions = append(res.Ack.Actions, describeAction(a))
	}
	if ack.Aborted {
		res.Error = "the agent aborted the NOTIFY (its ACK has the ABORT flag; HAProxy would fail the event)"
		return res
	}
	res.OK = true
	return res
}

// fail records err, which stopped the exchange while waiting for want
// (after sending what), as the result's error; other is the prefix of
// errors that are neither I/O nor a DISCONNECT.
func (r *notifyResult) fail(err error, timeout time.Duration, what, want, other string) {
	var de *spoetest.DisconnectError
	switch {
	case errors.As(err, &de):
		r.Disconnect = &disconnectInfo{Status: uint32(de.Status), Reason: de.Status.String(), Message: de.Message}
		r.Error = fmt.Sprintf("the agent answered %s with an AGENT-DISCONNECT: status %d (%s), message %q",
			what, uint32(de.Status), de.Status, de.Message)
	case errors.Is(err, os.ErrDeadlineExceeded):
		r.Error = fmt.Sprintf("no %s within %v", want, timeout)
	case errors.Is(err, io.EOF):
		r.Error = fmt.Sprintf("the agent closed the connection without answering %s", what)
	case errors.Is(err, io.ErrUnexpectedEOF):
		r.Error = fmt.Sprintf("the agent closed the connection in the middle of its answer to %s", what)
	default:
		var ce *codec.Error
		if errors.As(err, &ce) {
			r.Error = other + ": " + trim(err)
		} else {
			r.Error = other + ": " + describeIOError(err, 0)
		}
	}
}

// trim drops spoetest's prefix from an error's text.
func trim(err error) string { return strings.ReplaceAll(err.Error(), "spoetest: ", "") }

// describeAction renders one action for both outputs.
func describeAction(a spoetest.Action) actionResult {
	r := actionResult{Action: a.Type.String(), Scope: a.Scope.String(), Name: a.Name}
	v := r.Scope + "." + r.Name
	if a.Type == codec.ActionUnsetVar {
		r.text = "unset-var " + v
		return r
	}
	t := a.Value.Type()
	r.Type = typeName(t)
	var text string
	switch {
	case t == codec.TypeNull:
		r.text = "set-var " + v + " null"
		return r
	case t == codec.TypeBool:
		b, _ := a.Value.Bool()
		r.Value, text = b, strconv.FormatBool(b)
	case t == codec.TypeInt32 || t == codec.TypeInt64:
		n, _ := a.Value.Int()
		r.Value, text = n, strconv.FormatInt(n, 10)
	case t.IsInt():
		n, _ := a.Value.Uint()
		r.Value, text = n, strconv.FormatUint(n, 10)
	case t == codec.TypeIPv4 || t == codec.TypeIPv6:
		ip, _ := a.Value.Addr()
		r.Value, text = ip.String(), ip.String()
	case t == codec.TypeString:
		b, _ := a.Value.Bytes()
		if utf8.Valid(b) {
			r.Value = string(b)
		} else {
			r.ValueHex = hex.EncodeToString(b)
		}
		text = strconv.Quote(string(b))
	default: // binary
		b, _ := a.Value.Bytes()
		r.ValueHex, text = hex.EncodeToString(b), strconv.Quote(string(b))
	}
	r.text = "set-var " + v + " " + r.Type + " " + text
	return r
}

// printText prints the result for people: what the agent negotiated, the
// ACK and its actions one per line, or the DISCONNECT.
func (r *notifyResult) printText(w io.Writer) {
	if h := r.Hello; h != nil {
		over := ""
		if r.TLS != "" {
			over = ", over " + r.TLS
		}
		fmt.Fprintf(w, "hello: version %s, max-frame-size %d, capabilities %q%s\n", printable([]byte(h.Version)), h.MaxFrameSize, h.Capabilities, over)
	}
	if a := r.Ack; a != nil {
		n := "no actions"
		switch len(a.Actions) {
		case 0:
		case 1:
			n = "1 action"
		default:
			n = fmt.Sprintf("%d actions", len(a.Actions))
		}
		abort := ""
		if a.Aborted {
			abort = ", ABORT"
		}
		fmt.Fprintf(w, "ack: stream-id %d, frame-id %d%s, %s\n", a.StreamID, a.FrameID, abort, n)
		for _, act := range a.Actions {
			fmt.Fprintln(w, act.text)
		}
	}
	if d := r.Disconnect; d != nil {
		fmt.Fprintf(w, "disconnect: status %d (%s), message %q\n", d.Status, d.Reason, d.Message)
	}
}

// notifyUsage prints the help of the notify subcommand.
func notifyUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: spoe-forge notify [--host H] [--port P | --unix PATH] [--timeout D] [TLS flags]
           --message NAME [--arg NAME=VALUE]... [--message NAME [--arg ...]...]...
           [--style 3.2|2.6] [--max-frame-size N] [--capabilities LIST] [--json]

Plays HAProxy for one exchange with a running SPOE agent, as curl does for
HTTP: it connects, sends a HAPROXY-HELLO, then one NOTIFY carrying the
messages given, and prints what the agent negotiated and the actions of its
ACK. Use it to debug an agent without HAProxy.

ARGUMENTS
  Each --arg adds an argument to the --message before it, as the "args" line
  of a spoe-message section does. Its value is typed:

    NAME=null                 NULL (what HAProxy sends for a missing sample)
    NAME=bool:true            BOOL (true, false, 1, 0)
    NAME=int32:-5             INT32      NAME=uint32:5      UINT32
    NAME=int64:3              INT64 (HAProxy's type for every integer)
    NAME=uint64:18446744073709551615                         UINT64
    NAME=ipv4:192.0.2.7       IPV4       NAME=ipv6:2001:db8::1   IPV6
    NAME=str:/admin           STRING (str: may be empty)
    NAME=bin:text             BINARY holding the bytes of text
    NAME=hex:00ff10           BINARY given in hexadecimal
    NAME=str@FILE             STRING read from FILE (bin@FILE, hex@FILE too)
    NAME=@FILE                BINARY read from FILE, as curl's @
    NAME=-                    BINARY read from the standard input (also
                              str@-, hex@-; the input is read once)

  A NAME may be empty (=str:x), as for an argument without "name=".

STYLES
  --style 3.2 plays HAProxy 3.1+: capabilities "pipelining", stream-ids 1, 3,
  5 ... with frame-id 1, and a NOTIFY larger than the agent's max-frame-size
  is not sent. --style 2.6 plays HAProxy 2.6 and 3.0: capabilities
  "pipelining,async", stream-ids 0, 2, 4 ..., and such a NOTIFY is sent in
  fragments when the agent announced "fragmentation".

OUTPUT
  One line for the agent's AGENT-HELLO, one for the ACK, then its actions,
  one per line, in order; HAProxy prefixes the names with its var-prefix:

    hello: version 2.0, max-frame-size 16380, capabilities "pipelining"
    ack: stream-id 1, frame-id 1, 2 actions
    set-var txn.score int64 42
    unset-var sess.user

  Over TLS, the hello line ends with ", over TLS 1.3" (or 1.2).
  str and bin values are quoted as Go strings. An AGENT-DISCONNECT is printed
  as "disconnect: status N (reason), message "..."". When the exchange fails,
  one line on standard error says why. With --json, standard output is one
  JSON object: agent, tls (the version, over TLS), ok, hello, ack (stream_id, frame_id, aborted, actions:
  action, scope, name, type, value; bin values in hexadecimal), disconnect
  (status, reason, message) and error.

EXIT STATUS
  0  the agent answered the NOTIFY with an ACK
  1  it did not: connection refused, timeout, a DISCONNECT, a malformed or
     unacceptable answer, an ACK with the ABORT flag
  2  bad usage

EXAMPLES
  The example agent (go run ./cmd/example):
    spoe-forge notify --message check-request \
        --arg client_ip=ipv4:192.0.2.7 --arg path=str:/admin --arg user_agent=str:curl/8

  Every kind of value, two messages in one NOTIFY:
    spoe-forge notify --host 127.0.0.1 --port 12345 \
        --message check-request --arg ip=ipv4:192.0.2.7 --arg path=str:/admin \
        --arg n=int64:3 --arg body=@payload.bin --arg hdr=null \
        --message log-request --arg id=str:abc

  A request body from a pipe, as HAProxy 2.6 would send it:
    printf '{"a":1}' | spoe-forge notify --style 2.6 \
        --message check-body --arg body=- --arg len=int64:7

  HTTP headers, as "args headers=req.hdrs_bin" sends them:
    spoe-forge notify --message check-token \
        --arg headers=hex:0d617574686f72697a6174696f6e0842656172657220780000

  In a script:
    spoe-forge notify --json --message check-request --arg path=str:/ | jq .ack.actions

`+transportHelp+`
FLAGS
`)
	var f notifyFlags
	printFlags(w, newNotifyFlagSet(&f))
}
