package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// echoAgent serves a real pkg/agent whose handlers send every argument
// back: message "echo" sets txn.<arg name> to the argument's value (txn.
// unnamed for an argument without a name), "size" sets txn.<arg name>_len
// to the length of each STRING or BINARY argument, "unset" unsets
// sess.<arg name> for each argument, "tag" sets txn.tag to its argument
// "v", and the handler of "fail" fails. It returns the port.
func echoAgent(t *testing.T, opts ...agent.Option) int {
	t.Helper()
	a := agent.New(opts...)
	a.Message("echo", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		for _, arg := range m.Args() {
			name := string(arg.Name)
			if name == "" {
				name = "unnamed"
			}
			act.Set(agent.ScopeTransaction, name, arg.Value)
		}
		return nil
	})
	a.Message("size", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		for _, arg := range m.Args() {
			b, _ := arg.Value.Bytes()
			act.SetInt(agent.ScopeTransaction, string(arg.Name)+"_len", int64(len(b)))
		}
		return nil
	})
	a.Message("unset", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		for _, arg := range m.Args() {
			act.Unset(agent.ScopeSession, string(arg.Name))
		}
		return nil
	})
	a.Message("tag", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		v, _ := m.Arg("v")
		act.Set(agent.ScopeTransaction, "tag", v)
		return nil
	})
	a.Message("fail", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		return errors.New("the handler failed")
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serve(t, a, l)
	return l.Addr().(*net.TCPAddr).Port
}

// notifyFake is an impostor agent for notify: for each connection it reads
// the HAPROXY-HELLO, answers hello (nil: nothing) and, if the HELLO was
// answered, reads the NOTIFY and calls behave with it.
func notifyFake(t *testing.T, hello []byte, behave func(c net.Conn, notify codec.Frame)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				f, err := readAnyFrame(c)
				if err != nil || f.Type != codec.FrameHAProxyHello {
					fail(errors.New("no HAPROXY-HELLO"))
					return
				}
				if hello == nil {
					behave(c, codec.Frame{})
					return
				}
				if _, err := c.Write(hello); err != nil {
					fail(err)
					return
				}
				n, err := readAnyFrame(c)
				if err != nil {
					return // the client gave up after the AGENT-HELLO
				}
				if n.Type != codec.FrameNotify {
					fail(errors.New("a frame of type " + n.Type.String() + " instead of a NOTIFY"))
					return
				}
				behave(c, n)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		for _, err := range errs {
			t.Errorf("fake agent: %v", err)
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// readAnyFrame reads one frame of up to 64 KiB.
func readAnyFrame(r io.Reader) (codec.Frame, error) {
	var p [4]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return codec.Frame{}, err
	}
	n, err := codec.ParseLength(p[:], 1<<16)
	if err != nil {
		return codec.Frame{}, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return codec.Frame{}, err
	}
	return codec.ParseFrame(b)
}

// ackTo returns an ACK frame answering notify with the given flags and
// action payload.
func ackTo(notify codec.Frame, flags codec.Flags, actions []byte) []byte {
	return codec.AppendFrame(nil, codec.Header{Type: codec.FrameAck, Flags: flags, StreamID: notify.StreamID, FrameID: notify.FrameID}, actions)
}

// mustAction returns an encoded action; the test's own literals are valid.
func mustAction(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// goodHello is an acceptable AGENT-HELLO with pipelining.
var goodHello = hello(helloHeader, version20, mfs16380, capsPipe)

// TestNotify covers every exit status of "spoe-forge notify": every value
// type sent to a real agent and echoed back, several messages in one
// NOTIFY, both styles, files and standard input; fakes that answer with a
// DISCONNECT, nothing, garbage or an aborted ACK; a closed port; and bad
// command lines.
func TestNotify(t *testing.T) {
	dir := t.TempDir()
	payload := filepath.Join(dir, "payload.bin")
	require.NoError(t, os.WriteFile(payload, []byte{0, 1, 'a', 0xff, '\n'}, 0o644))
	text := filepath.Join(dir, "text.txt")
	require.NoError(t, os.WriteFile(text, []byte("from a file"), 0o644))
	hexFile := filepath.Join(dir, "block.hex")
	require.NoError(t, os.WriteFile(hexFile, []byte("0d 617574686f72697a6174696f6e\n01 78 0000\n"), 0o644))

	echo := func(t *testing.T) int { return echoAgent(t) }
	type tc struct {
		name   string
		server func(t *testing.T) int // nil: never connects
		args   []string               // after "notify --port P" when server is set
		stdin  string
		code   int
		stdout []string // exact lines expected on stdout, in order; nil: empty
		stderr []string // substrings expected on stderr; nil: empty
	}
	helloLine := `hello: version 2.0, max-frame-size 16380, capabilities "pipelining,fragmentation"`
	cases := []tc{
		{
			name:   "every type, echoed by a real agent",
			server: echo,
			args: []string{"--message", "echo",
				"--arg", "n=null", "--arg", "t=bool:true", "--arg", "f=bool:0",
				"--arg", "i32=int32:-2147483648", "--arg", "u32=uint32:4294967295",
				"--arg", "i64=int64:-9223372036854775808", "--arg", "u64=uint64:18446744073709551615",
				"--arg", "v4=ipv4:192.0.2.7", "--arg", "v6=ipv6:2001:db8::1",
				"--arg", "s=str:/admin?x=1 y", "--arg", "e=str:", "--arg", "b=bin:raw text",
				"--arg", "h=hex:00ff10", "--arg", "=str:no name"},
			code: exitAck,
			stdout: []string{helloLine, "ack: stream-id 1, frame-id 1, 14 actions",
				"set-var txn.n null", "set-var txn.t bool true", "set-var txn.f bool false",
				"set-var txn.i32 int32 -2147483648", "set-var txn.u32 uint32 4294967295",
				"set-var txn.i64 int64 -9223372036854775808", "set-var txn.u64 uint64 18446744073709551615",
				"set-var txn.v4 ipv4 192.0.2.7", "set-var txn.v6 ipv6 2001:db8::1",
				`set-var txn.s str "/admin?x=1 y"`, `set-var txn.e str ""`, `set-var txn.b bin "raw text"`,
				`set-var txn.h bin "\x00\xff\x10"`, `set-var txn.unnamed str "no name"`},
		},
		{
			name:   "files and the standard input",
			server: echo,
			args: []string{"--message", "echo", "--arg", "body=@" + payload, "--arg", "s=str@" + text,
				"--arg", "headers=hex@" + hexFile, "--arg", "in=-"},
			stdin: "piped\x00in",
			code:  exitAck,
			stdout: []string{helloLine, "ack: stream-id 1, frame-id 1, 4 actions",
				`set-var txn.body bin "\x00\x01a\xff\n"`, `set-var txn.s str "from a file"`,
				`set-var txn.headers bin "\rauthorization\x01x\x00\x00"`, `set-var txn.in bin "piped\x00in"`},
		},
		{
			name:   "stdin as a string",
			server: echo,
			args:   []string{"--message", "echo", "--arg", "s=str@-"},
			stdin:  "text",
			code:   exitAck,
			stdout: []string{helloLine, "ack: stream-id 1, frame-id 1, 1 action", `set-var txn.s str "text"`},
		},
		{
			name:   "several messages in one NOTIFY, unset-var, a message nobody handles",
			server: echo,
			args: []string{"--message", "tag", "--arg", "v=int64:1", "--message", "nobody", "--arg", "x=str:y",
				"--message", "unset", "--arg", "user=null", "--arg", "role=null", "--message", "echo"},
			code: exitAck,
			stdout: []string{helloLine, "ack: stream-id 1, frame-id 1, 3 actions",
				"set-var txn.tag int64 1", "unset-var sess.user", "unset-var sess.role"},
		},
		{
			name:   "a message without arguments and no handler: an ACK without actions",
			server: echo,
			args:   []string{"--message", "nobody"},
			code:   exitAck,
			stdout: []string{helloLine, "ack: stream-id 1, frame-id 1, no actions"},
		},
		{
			name:   "a failing handler is still acknowledged",
			server: func(t *testing.T) int { return echoAgent(t, agent.WithErrorVar(agent.ScopeTransaction, "agent_error")) },
			args:   []string{"--message", "fail"},
			code:   exitAck,
			stdout: []string{helloLine, "ack: stream-id 1, frame-id 1, 1 action", "set-var txn.agent_error int64 1001"},
		},
		{
			name:   "HAProxy 2.6 style: stream-id 0, a fragmented NOTIFY",
			server: echo,
			args:   []string{"--style", "2.6", "--max-frame-size", "256", "--message", "size", "--arg", "b=str:" + strings.Repeat("x", 600), "--message", "tag", "--arg", "v=int64:7"},
			code:   exitAck,
			stdout: []string{`hello: version 2.0, max-frame-size 256, capabilities "pipelining,fragmentation"`, "ack: stream-id 0, frame-id 1, 2 actions",
				"set-var txn.b_len int64 600", "set-var txn.tag int64 7"},
		},
		{
			name:   "actions too large for the agent's frame are dropped by the agent",
			server: func(t *testing.T) int { return echoAgent(t, agent.WithErrorVar(agent.ScopeTransaction, "agent_error")) },
			args:   []string{"--style", "2.6", "--max-frame-size", "256", "--message", "echo", "--arg", "b=str:" + strings.Repeat("x", 200), "--arg", "c=str:" + strings.Repeat("y", 100)},
			code:   exitAck,
			stdout: []string{`hello: version 2.0, max-frame-size 256, capabilities "pipelining,fragmentation"`, "ack: stream-id 0, frame-id 1, 1 action",
				"set-var txn.agent_error int64 1004"},
		},
		{
			name:   "HAProxy 3.2 style does not fragment",
			server: echo,
			args:   []string{"--max-frame-size", "256", "--message", "echo", "--arg", "b=str:" + strings.Repeat("x", 600)},
			code:   exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 256, capabilities "pipelining,fragmentation"`},
			stderr: []string{"failed: 127.0.0.1:", "the NOTIFY was not sent: a NOTIFY of LENGTH 618 exceeds the max-frame-size 256 and fragmentation was not negotiated"},
		},
		{
			name: "an agent without fragmentation refuses a large frame",
			server: func(t *testing.T) int {
				return echoAgent(t, agent.WithMaxFrameSize(256), agent.WithFragmentation(false))
			},
			args:   []string{"--style", "3.0", "--capabilities", "pipelining", "--message", "echo", "--arg", "b=str:x"},
			code:   exitAck,
			stdout: []string{`hello: version 2.0, max-frame-size 256, capabilities "pipelining"`, "ack: stream-id 0, frame-id 1, 1 action", `set-var txn.b str "x"`},
		},
		// Fakes.
		{
			name: "AGENT-DISCONNECT instead of an ACK",
			server: func(t *testing.T) int {
				return notifyFake(t, goodHello, func(c net.Conn, _ codec.Frame) {
					_, _ = c.Write(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusFrameTooBig, "frame is too big"))
				})
			},
			args: []string{"--message", "m"},
			code: exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 16380, capabilities "pipelining"`,
				`disconnect: status 3 (frame is too big), message "frame is too big"`},
			stderr: []string{`the agent answered the NOTIFY with an AGENT-DISCONNECT: status 3 (frame is too big), message "frame is too big"`},
		},
		{
			name: "AGENT-DISCONNECT instead of the AGENT-HELLO",
			server: func(t *testing.T) int {
				return notifyFake(t, codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, 142, "database down"), nil)
			},
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stdout: []string{`disconnect: status 142 (status 142), message "database down"`},
			stderr: []string{`the agent answered the HAPROXY-HELLO with an AGENT-DISCONNECT: status 142 (status 142), message "database down"`},
		},
		{
			name: "never answers the NOTIFY",
			server: func(t *testing.T) int {
				return notifyFake(t, goodHello, func(c net.Conn, _ codec.Frame) { _, _ = io.Copy(io.Discard, c) })
			},
			args:   []string{"--timeout", "300ms", "--message", "m"},
			code:   exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 16380, capabilities "pipelining"`},
			stderr: []string{"no ACK within 300ms"},
		},
		{
			name: "never answers the HELLO",
			server: func(t *testing.T) int {
				return notifyFake(t, nil, func(c net.Conn, _ codec.Frame) { _, _ = io.Copy(io.Discard, c) })
			},
			args:   []string{"--timeout", "300ms", "--message", "m"},
			code:   exitFailed,
			stderr: []string{"no AGENT-HELLO within 300ms"},
		},
		{
			name:   "closes after the HELLO",
			server: func(t *testing.T) int { return notifyFake(t, nil, func(net.Conn, codec.Frame) {}) },
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stderr: []string{"the agent closed the connection without answering the HAPROXY-HELLO"},
		},
		{
			name:   "closes without answering the NOTIFY",
			server: func(t *testing.T) int { return notifyFake(t, goodHello, func(net.Conn, codec.Frame) {}) },
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 16380, capabilities "pipelining"`},
			stderr: []string{"the agent closed the connection without answering the NOTIFY"},
		},
		{
			name: "closes in the middle of the ACK",
			server: func(t *testing.T) int {
				return notifyFake(t, goodHello, func(c net.Conn, n codec.Frame) {
					_, _ = c.Write(ackTo(n, codec.FlagFin, mustAction(codec.AppendSetVar(nil, codec.ScopeTransaction, "x", codec.Int64(1))))[:12])
				})
			},
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 16380, capabilities "pipelining"`},
			stderr: []string{"the agent closed the connection in the middle of its answer to the NOTIFY"},
		},
		{
			name: "bad AGENT-HELLO: version 2.1",
			server: func(t *testing.T) int {
				return notifyFake(t, hello(helloHeader, kv("version", codec.String("2.1")), mfs16380, capsPipe), nil)
			},
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stderr: []string{"bad AGENT-HELLO: AGENT-HELLO: spop: unsupported version"},
		},
		{
			name:   "garbage: an HTTP server",
			server: func(t *testing.T) int { return notifyFake(t, []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), nil) },
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stderr: []string{"bad AGENT-HELLO: frame LENGTH 1213486160 (limit 16380)"},
		},
		{
			name: "malformed ACK",
			server: func(t *testing.T) int {
				return notifyFake(t, goodHello, func(c net.Conn, n codec.Frame) { _, _ = c.Write(ackTo(n, codec.FlagFin, []byte{1, 3})) })
			},
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 16380, capabilities "pipelining"`},
			stderr: []string{"bad answer to the NOTIFY: ACK 1/1: spop: invalid frame received"},
		},
		{
			name: "ACK with other ids",
			server: func(t *testing.T) int {
				return notifyFake(t, goodHello, func(c net.Conn, n codec.Frame) {
					n.StreamID += 2
					_, _ = c.Write(ackTo(n, codec.FlagFin, nil))
				})
			},
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 16380, capabilities "pipelining"`},
			stderr: []string{"bad answer to the NOTIFY: ACK 3/1 answers no NOTIFY in flight"},
		},
		{
			name: "ACK with the ABORT flag",
			server: func(t *testing.T) int {
				return notifyFake(t, goodHello, func(c net.Conn, n codec.Frame) {
					_, _ = c.Write(ackTo(n, codec.FlagFin|codec.FlagAbort, mustAction(codec.AppendUnsetVar(nil, codec.ScopeRequest, "x"))))
				})
			},
			args: []string{"--message", "m"},
			code: exitFailed,
			stdout: []string{`hello: version 2.0, max-frame-size 16380, capabilities "pipelining"`,
				"ack: stream-id 1, frame-id 1, ABORT, 1 action", "unset-var req.x"},
			stderr: []string{"the agent aborted the NOTIFY"},
		},
		{
			name:   "closed port",
			server: closedPort,
			args:   []string{"--message", "m"},
			code:   exitFailed,
			stderr: []string{"failed: 127.0.0.1:", "connection refused: nothing listens there"},
		},
		// Usage.
		{name: "no message", args: []string{"notify"}, code: exitUsage, stderr: []string{"no --message: give at least one message to send", `Run "spoe-forge notify --help"`}},
		{name: "arg before message", args: []string{"notify", "--arg", "a=str:x", "--message", "m"}, code: exitUsage, stderr: []string{"it comes before any --message"}},
		{name: "empty message name", args: []string{"notify", "--message", ""}, code: exitUsage, stderr: []string{"a message name must not be empty"}},
		{name: "arg without =", args: []string{"notify", "--message", "m", "--arg", "x"}, code: exitUsage, stderr: []string{"want NAME=TYPE:VALUE"}},
		{name: "arg without type", args: []string{"notify", "--message", "m", "--arg", "x=abc"}, code: exitUsage, stderr: []string{`"abc" has no type`}},
		{name: "unknown type", args: []string{"notify", "--message", "m", "--arg", "x=float:1.5"}, code: exitUsage, stderr: []string{`unknown type "float"`}},
		{name: "null with a value", args: []string{"notify", "--message", "m", "--arg", "x=null:1"}, code: exitUsage, stderr: []string{"write null alone"}},
		{name: "bad bool", args: []string{"notify", "--message", "m", "--arg", "x=bool:yes"}, code: exitUsage, stderr: []string{`"yes" is not a bool`}},
		{name: "int32 overflow", args: []string{"notify", "--message", "m", "--arg", "x=int32:2147483648"}, code: exitUsage, stderr: []string{`"2147483648" is not an int32`}},
		{name: "negative uint32", args: []string{"notify", "--message", "m", "--arg", "x=uint32:-1"}, code: exitUsage, stderr: []string{`"-1" is not a uint32`}},
		{name: "int64 in hex", args: []string{"notify", "--message", "m", "--arg", "x=int64:0x10"}, code: exitUsage, stderr: []string{`"0x10" is not an int64`}},
		{name: "uint64 overflow", args: []string{"notify", "--message", "m", "--arg", "x=uint64:18446744073709551616"}, code: exitUsage, stderr: []string{"is not a uint64"}},
		{name: "ipv4 given an IPv6", args: []string{"notify", "--message", "m", "--arg", "x=ipv4:2001:db8::1"}, code: exitUsage, stderr: []string{`"2001:db8::1" is not an IPv4 address`}},
		{name: "ipv6 given an IPv4", args: []string{"notify", "--message", "m", "--arg", "x=ipv6:192.0.2.1"}, code: exitUsage, stderr: []string{"is not an IPv6 address"}},
		{name: "ipv6 mapped IPv4", args: []string{"notify", "--message", "m", "--arg", "x=ipv6:::ffff:192.0.2.1"}, code: exitUsage, stderr: []string{"IPv4-mapped address is sent as ipv4"}},
		{name: "bad hex", args: []string{"notify", "--message", "m", "--arg", "x=hex:0g"}, code: exitUsage, stderr: []string{`"0g" is not hexadecimal`}},
		{name: "int from a file", args: []string{"notify", "--message", "m", "--arg", "x=int64@" + text}, code: exitUsage, stderr: []string{"only str, bin and hex values can be read from a file"}},
		{name: "missing file", args: []string{"notify", "--message", "m", "--arg", "x=@" + filepath.Join(dir, "nope")}, code: exitUsage, stderr: []string{"no such file or directory"}},
		{name: "@ without file", args: []string{"notify", "--message", "m", "--arg", "x=@"}, code: exitUsage, stderr: []string{"@ needs a file name"}},
		{name: "stdin twice", args: []string{"notify", "--message", "m", "--arg", "x=-", "--arg", "y=str@-"}, stdin: "once", code: exitUsage, stderr: []string{"can be read only once"}},
		{name: "no stdin", args: []string{"notify", "--message", "m", "--arg", "x=-"}, code: exitUsage, stderr: []string{"there is no standard input"}},
		{name: "bad style", args: []string{"notify", "--style", "2.4", "--message", "m"}, code: exitUsage, stderr: []string{`--style "2.4": want 3.2`}},
		{name: "frame size too small", args: []string{"notify", "--max-frame-size", "255", "--message", "m"}, code: exitUsage, stderr: []string{"--max-frame-size 255 is out of range 256..16777216"}},
		{name: "frame size too large", args: []string{"notify", "--max-frame-size", "16777217", "--message", "m"}, code: exitUsage, stderr: []string{"is out of range"}},
		{name: "extra argument", args: []string{"notify", "--message", "m", "a=str:x"}, code: exitUsage, stderr: []string{`unexpected argument "a=str:x" (arguments are given with --arg)`}},
		{name: "port 0", args: []string{"notify", "--port", "0", "--message", "m"}, code: exitUsage, stderr: []string{"--port 0 is out of range 1..65535"}},
		{name: "zero timeout", args: []string{"notify", "--timeout", "0s", "--message", "m"}, code: exitUsage, stderr: []string{"--timeout 0s must be positive"}},
		{name: "unknown flag", args: []string{"notify", "--data", "x"}, code: exitUsage, stderr: []string{"flag provided but not defined: -data"}},
		{name: "256 arguments", args: append([]string{"notify", "--message", "m"}, repeatArg(256)...), code: exitUsage, stderr: []string{`message "m" already has 255 arguments`}},
		// Help.
		{name: "notify --help", args: []string{"notify", "--help"}, code: exitAck, stdout: nil, stderr: nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.server != nil {
				port := c.server(t)
				args = append([]string{"notify", "--port", strconv.Itoa(port)}, c.args...)
			}
			var stdin io.Reader
			if c.stdin != "" {
				stdin = strings.NewReader(c.stdin)
			}
			var stdout, stderr bytes.Buffer
			code := run(args, stdin, &stdout, &stderr)
			require.Equal(t, c.code, code, "exit status; stdout %q, stderr %q", stdout.String(), stderr.String())
			if c.name == "notify --help" {
				require.Contains(t, stdout.String(), "Usage: spoe-forge notify")
				require.Empty(t, stderr.String())
				return
			}
			if c.stdout == nil {
				require.Empty(t, stdout.String())
			} else {
				require.Equal(t, strings.Join(c.stdout, "\n")+"\n", stdout.String())
			}
			requireOutput(t, "stderr", stderr.String(), c.stderr)
			if c.code == exitFailed {
				require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line says why: %q", stderr.String())
			}
		})
	}
}

// repeatArg returns n --arg flags.
func repeatArg(n int) []string {
	var out []string
	for i := range n {
		out = append(out, "--arg", "a"+strconv.Itoa(i)+"=int64:1")
	}
	return out
}

// TestNotifyJSON: --json prints one object with the hello, the ACK's
// actions with typed values, and, on failure, the DISCONNECT and the error.
func TestNotifyJSON(t *testing.T) {
	port := echoAgent(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"notify", "--json", "--port", strconv.Itoa(port), "--message", "echo",
		"--arg", "n=null", "--arg", "t=bool:false", "--arg", "i=int64:-3", "--arg", "u=uint64:18446744073709551615",
		"--arg", "ip=ipv6:2001:db8::1", "--arg", "s=str:a\"<b>", "--arg", "bad=str@-", "--arg", "b=hex:00ff",
		"--message", "unset", "--arg", "user=null"}, strings.NewReader("\xff\xfe"), &stdout, &stderr)
	require.Equal(t, exitAck, code, stderr.String())
	require.Empty(t, stderr.String())
	require.Equal(t, 1, strings.Count(stdout.String(), "\n"), "one line of JSON")
	var got map[string]any
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	require.NoError(t, dec.Decode(&got))
	want := map[string]any{
		"agent": "127.0.0.1:" + strconv.Itoa(port),
		"ok":    true,
		"hello": map[string]any{"version": "2.0", "max_frame_size": json.Number("16380"), "capabilities": "pipelining,fragmentation"},
		"ack": map[string]any{"stream_id": json.Number("1"), "frame_id": json.Number("1"), "aborted": false, "actions": []any{
			map[string]any{"action": "set-var", "scope": "txn", "name": "n", "type": "null"},
			map[string]any{"action": "set-var", "scope": "txn", "name": "t", "type": "bool", "value": false},
			map[string]any{"action": "set-var", "scope": "txn", "name": "i", "type": "int64", "value": json.Number("-3")},
			map[string]any{"action": "set-var", "scope": "txn", "name": "u", "type": "uint64", "value": json.Number("18446744073709551615")},
			map[string]any{"action": "set-var", "scope": "txn", "name": "ip", "type": "ipv6", "value": "2001:db8::1"},
			map[string]any{"action": "set-var", "scope": "txn", "name": "s", "type": "str", "value": "a\"<b>"},
			map[string]any{"action": "set-var", "scope": "txn", "name": "bad", "type": "str", "value_hex": "fffe"},
			map[string]any{"action": "set-var", "scope": "txn", "name": "b", "type": "bin", "value_hex": "00ff"},
			map[string]any{"action": "unset-var", "scope": "sess", "name": "user"},
		}},
	}
	require.Equal(t, want, got)

	// A DISCONNECT, in JSON.
	port = notifyFake(t, goodHello, func(c net.Conn, _ codec.Frame) {
		_, _ = c.Write(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusInvalid, "invalid frame received"))
	})
	stdout.Reset()
	stderr.Reset()
	code = run([]string{"notify", "--json", "--port", strconv.Itoa(port), "--message", "m"}, nil, &stdout, &stderr)
	require.Equal(t, exitFailed, code)
	got = nil
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &got))
	require.Equal(t, false, got["ok"])
	require.Equal(t, map[string]any{"status": 4.0, "reason": "invalid frame received", "message": "invalid frame received"}, got["disconnect"])
	require.Contains(t, got["error"], "AGENT-DISCONNECT: status 4")
	require.Nil(t, got["ack"])
	require.Contains(t, stderr.String(), "failed: ")
}

// TestNotifyTimeoutBoundsTheWholeExchange: --timeout bounds connect, HELLO,
// NOTIFY and ACK together, even against a peer that dribbles bytes and so
// restarts each per-step deadline.
func TestNotifyTimeoutBoundsTheWholeExchange(t *testing.T) {
	port := notifyFake(t, goodHello, func(c net.Conn, n codec.Frame) {
		ack := ackTo(n, codec.FlagFin, nil)
		for _, b := range ack[:len(ack)-1] {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = io.Copy(io.Discard, c)
	})
	start := time.Now()
	var stdout, stderr bytes.Buffer
	code := run([]string{"notify", "--port", strconv.Itoa(port), "--timeout", "250ms", "--message", "m"}, nil, &stdout, &stderr)
	require.Equal(t, exitFailed, code)
	require.Contains(t, stderr.String(), "no ACK within 250ms")
	require.Less(t, time.Since(start), 2*time.Second)
}

// TestNotifyExampleAgent runs the real example agent (cmd/example) and
// checks notify's answers from it: its handler's three variables for a
// blocked and an allowed request.
func TestNotifyExampleAgent(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build cmd/example")
	bin := filepath.Join(t.TempDir(), "example")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "../example").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	port := closedPort(t)
	cmd := exec.Command(bin, "-addr", "127.0.0.1:"+strconv.Itoa(port), "-log-level", "warn")
	logs := &haproxytest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(ioTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "the example agent does not listen: %s", logs.String())
		time.Sleep(50 * time.Millisecond)
	}

	hello := `hello: version 2.0, max-frame-size 16380, capabilities "pipelining,fragmentation"`
	tests := []struct {
		name  string
		style string
		args  []string
		want  []string
	}{
		{"admin from outside", "3.2", []string{"--arg", "client_ip=ipv4:192.0.2.7", "--arg", "path=str:/admin", "--arg", "user_agent=str:curl/8"},
			[]string{hello, "ack: stream-id 1, frame-id 1, 3 actions", "set-var txn.access_allowed bool false", "set-var txn.score int64 106", `set-var txn.test_arg str "/admin"`}},
		{"admin from loopback, HAProxy 2.6", "2.6", []string{"--arg", "client_ip=ipv4:127.0.0.1", "--arg", "path=str:/admin/users", "--arg", "user_agent=null"},
			[]string{hello, "ack: stream-id 0, frame-id 1, 3 actions", "set-var txn.access_allowed bool true", "set-var txn.score int64 12", `set-var txn.test_arg str "/admin/users"`}},
		{"IPv6 client, public path", "3.2", []string{"--arg", "client_ip=ipv6:2001:db8::7", "--arg", "path=str:/", "--arg", "user_agent=str:x"},
			[]string{hello, "ack: stream-id 1, frame-id 1, 3 actions", "set-var txn.access_allowed bool true", "set-var txn.score int64 1", `set-var txn.test_arg str "/"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"notify", "--port", strconv.Itoa(port), "--style", tt.style, "--message", "check-request"}, tt.args...)
			code := run(args, nil, &stdout, &stderr)
			require.Equal(t, exitAck, code, stderr.String())
			require.Equal(t, strings.Join(tt.want, "\n")+"\n", stdout.String())
		})
	}
}

// TestNotifyHelpExamples runs every example of "notify --help" against a
// real agent: each must parse and get an ACK.
func TestNotifyHelpExamples(t *testing.T) {
	port := echoAgent(t)
	payload := filepath.Join(t.TempDir(), "payload.bin")
	require.NoError(t, os.WriteFile(payload, []byte{0, 1, 2}, 0o644))
	var help bytes.Buffer
	notifyUsage(&help)
	text := strings.ReplaceAll(help.String(), "\\\n", " ")
	n := 0
	for _, line := range strings.Split(text, "\n") {
		_, cmd, ok := strings.Cut(line, "spoe-forge notify ")
		if !ok || !strings.HasPrefix(strings.TrimSpace(line), "spoe-forge notify --") && !strings.Contains(line, "| spoe-forge notify") {
			continue
		}
		cmd, _, _ = strings.Cut(cmd, " | ") // drop a pipe into jq
		var stdin io.Reader
		if strings.Contains(line, "printf ") {
			stdin = strings.NewReader(`{"a":1}`)
		}
		args := []string{"notify"}
		for _, f := range strings.Fields(cmd) {
			args = append(args, strings.ReplaceAll(f, "@payload.bin", "@"+payload))
		}
		args = append(args, "--port", strconv.Itoa(port))
		t.Run(strings.Join(args[1:3], " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.Equal(t, exitAck, run(args, stdin, &stdout, &stderr), "%v: %s", args, stderr.String())
		})
		n++
	}
	require.Equal(t, 5, n, "examples found in:\n%s", help.String())
}
