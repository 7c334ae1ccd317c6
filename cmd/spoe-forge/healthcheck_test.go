package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// ioTimeout bounds every read and write of the fakes, so that no test can
// hang on a socket.
const ioTimeout = 5 * time.Second

// TestCheckHelloIsHAProxys pins the HELLO we send to the bytes HAProxy's
// "option spop-check" sends, as captured from 2.6, 3.0, 3.2 and 3.4.
func TestCheckHelloIsHAProxys(t *testing.T) {
	for _, v := range []string{"2.6", "3.0", "3.2", "3.4"} {
		t.Run(v, func(t *testing.T) {
			want := readVector(t, v, "haproxy-hello-healthcheck")
			require.Equal(t, hex.EncodeToString(want), hex.EncodeToString(checkHello))
		})
	}
	require.Len(t, checkHello, 82)
	require.Equal(t, []byte{0, 0, 0, 78}, checkHello[:4], "LENGTH 78")

	f, err := codec.DecodeFrame(checkHello, codec.MaxFrameLen)
	require.NoError(t, err)
	require.Equal(t, codec.FrameHAProxyHello, f.Type)
	require.Equal(t, codec.FlagFin, f.Flags)
	require.Zero(t, f.StreamID)
	require.Zero(t, f.FrameID)
	var h codec.HAProxyHello
	require.NoError(t, h.Decode(f.Payload))
	require.Equal(t, "2.0", string(h.SupportedVersions))
	require.Equal(t, uint32(16380), h.MaxFrameSize)
	require.NotNil(t, h.RawCapabilities)
	require.Empty(t, h.RawCapabilities)
	require.True(t, h.Healthcheck)
	require.Nil(t, h.EngineID)
}

func readVector(t *testing.T, version, name string) []byte {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors", version, name+".hex"))
	require.NoError(t, err)
	b, err := hex.DecodeString(strings.TrimSpace(string(text)))
	require.NoError(t, err)
	return b
}

// startAgent serves a real pkg/agent on 127.0.0.1 and returns its port.
func startAgent(t *testing.T, opts ...agent.Option) int {
	t.Helper()
	a := agent.New(opts...)
	a.Message("check-request", func(context.Context, *agent.Message, *agent.Actions) error { return nil })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serve(t, a, l)
	return l.Addr().(*net.TCPAddr).Port
}

// fake is an impostor agent: for each connection it reads the HELLO, checks
// that it is HAProxy's health-check HELLO, then behaves as told.
type fake struct {
	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error // HELLOs that were not checkHello, and I/O failures
}

// startFake serves behave on 127.0.0.1 until the test ends and returns the
// port. behave runs after the HELLO was read; the connection is closed when
// it returns.
func startFake(t *testing.T, behave func(c net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fake{l: l}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return // listener closed by the cleanup
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				got := make([]byte, len(checkHello))
				if _, err := io.ReadFull(c, got); err != nil {
					f.fail(err)
					return
				}
				if !bytes.Equal(got, checkHello) {
					f.fail(errors.New("received " + hex.EncodeToString(got) + ", not the health-check HELLO"))
					return
				}
				behave(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		f.wg.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, err := range f.errs {
			t.Errorf("fake agent: %v", err)
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

func (f *fake) fail(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
}

// reply returns a behaviour that writes b in one write.
func reply(b []byte) func(net.Conn) {
	return func(c net.Conn) { _, _ = c.Write(b) }
}

// hello builds an AGENT-HELLO frame with the given header and items.
func hello(h codec.Header, items ...func([]byte) []byte) []byte {
	var payload []byte
	for _, it := range items {
		payload = it(payload)
	}
	return codec.AppendFrame(nil, h, payload)
}

func kv(name string, v codec.Value) func([]byte) []byte {
	return func(b []byte) []byte { return codec.AppendKV(b, name, v) }
}

var (
	helloHeader = codec.Header{Type: codec.FrameAgentHello, Flags: codec.FlagFin}
	version20   = kv("version", codec.String("2.0"))
	mfs16380    = kv("max-frame-size", codec.Uint32(16380))
	capsPipe    = kv("capabilities", codec.String("pipelining"))
)

// closedPort returns a port of 127.0.0.1 on which nothing listens.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// TestRun covers every exit status of "spoe-forge healthcheck" and of the
// top-level command, against the real agent, fakes and bad command lines.
func TestRun(t *testing.T) {
	type tc struct {
		name string
		// server starts what the check talks to and returns its port; nil
		// for cases that never connect.
		server     func(t *testing.T) int
		args       []string // after "healthcheck --port P" when server is set
		code       int
		stdout     []string // substrings expected on stdout ("" alone: must be empty)
		stderr     []string // substrings expected on stderr
		quietCheck bool     // also run with --quiet and expect no output at all
	}
	fakeWith := func(behave func(net.Conn)) func(t *testing.T) int {
		return func(t *testing.T) int { return startFake(t, behave) }
	}
	cases := []tc{
		// Healthy.
		{
			name:       "real agent",
			server:     func(t *testing.T) int { return startAgent(t) },
			code:       exitHealthy,
			stdout:     []string{"healthy: 127.0.0.1:", `answered version 2.0, max-frame-size 16380, capabilities "fragmentation"`},
			quietCheck: true,
		},
		{
			name: "real agent with a smaller frame size and no fragmentation",
			server: func(t *testing.T) int {
				return startAgent(t, agent.WithMaxFrameSize(4096), agent.WithFragmentation(false))
			},
			code:   exitHealthy,
			stdout: []string{"max-frame-size 4096, capabilities \"\""},
		},
		{
			name:   "fake: minimal max-frame-size 256",
			server: fakeWith(reply(hello(helloHeader, version20, kv("max-frame-size", codec.Uint32(256)), capsPipe))),
			code:   exitHealthy,
			stdout: []string{`max-frame-size 256, capabilities "pipelining"`},
		},
		{
			name:   "fake: version with spaces, integer of another type, unknown item",
			server: fakeWith(reply(hello(helloHeader, kv("version", codec.String(" 2.0 ")), kv("max-frame-size", codec.Int64(16380)), kv("x-extra", codec.Bool(true)), kv("capabilities", codec.String("")), kv("more", codec.Binary([]byte{1, 2}))))),
			code:   exitHealthy,
			stdout: []string{`version " 2.0 ", max-frame-size 16380, capabilities ""`},
		},
		// Unhealthy.
		{
			name:       "closed port",
			server:     closedPort,
			code:       exitUnhealthy,
			stderr:     []string{"unhealthy: 127.0.0.1:", "connection refused"},
			quietCheck: true,
		},
		{
			name:   "garbage: an HTTP server",
			server: fakeWith(reply([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))),
			code:   exitUnhealthy,
			stderr: []string{"not an SPOP frame", `"HTTP/1.1 400 Bad Request"`},
		},
		{
			name:   "garbage: LENGTH below 7",
			server: fakeWith(reply([]byte{0, 0, 0, 2, 0x65, 0})),
			code:   exitUnhealthy,
			stderr: []string{"not an SPOP frame (LENGTH 2 is outside 7..16380)"},
		},
		{
			name:   "frame larger than HAProxy's offer",
			server: fakeWith(reply(binary.BigEndian.AppendUint32(nil, 16381))),
			code:   exitUnhealthy,
			stderr: []string{"LENGTH 16381 is outside 7..16380"},
		},
		{
			name:   "AGENT-DISCONNECT",
			server: fakeWith(reply(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusBadVersion, "unsupported version"))),
			code:   exitUnhealthy,
			stderr: []string{"answered an AGENT-DISCONNECT instead of an AGENT-HELLO", `status 8 (unsupported version), message "unsupported version"`},
		},
		{
			name:   "AGENT-DISCONNECT with an agent-specific status",
			server: fakeWith(reply(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, 142, "database down"))),
			code:   exitUnhealthy,
			stderr: []string{`status 142 (status 142), message "database down"`},
		},
		{
			name:   "HAPROXY-DISCONNECT frame",
			server: fakeWith(reply(codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusInvalid, "invalid frame received"))),
			code:   exitUnhealthy,
			stderr: []string{"HAPROXY-DISCONNECT frame (type 2", `status 4 (invalid frame received), message "invalid frame received"`},
		},
		{
			name:   "DISCONNECT with a malformed payload",
			server: fakeWith(reply(codec.AppendFrame(nil, codec.Header{Type: codec.FrameAgentDisconnect, Flags: codec.FlagFin}, []byte{0x0b, 's', 't'}))),
			code:   exitUnhealthy,
			stderr: []string{"AGENT-DISCONNECT", "payload is malformed"},
		},
		{
			name:   "NOTIFY instead of AGENT-HELLO",
			server: fakeWith(reply(codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1}, nil))),
			code:   exitUnhealthy,
			stderr: []string{"frame of type 3 (NOTIFY) instead of an AGENT-HELLO"},
		},
		{
			name: "never answers",
			server: fakeWith(func(c net.Conn) {
				_, _ = io.Copy(io.Discard, c) // until the checker gives up and closes
			}),
			args:   []string{"--timeout", "200ms"},
			code:   exitUnhealthy,
			stderr: []string{"no AGENT-HELLO: no answer within 200ms"},
		},
		{
			name:   "closes without answering",
			server: fakeWith(func(net.Conn) {}),
			code:   exitUnhealthy,
			stderr: []string{"closed the connection without answering"},
		},
		{
			name:   "closes in the middle of the frame",
			server: fakeWith(reply(hello(helloHeader, version20, mfs16380, capsPipe)[:20])),
			code:   exitUnhealthy,
			stderr: []string{"stopped after 16 of the", "closed the connection"},
		},
		{
			name:   "bad version 2.1",
			server: fakeWith(reply(hello(helloHeader, kv("version", codec.String("2.1")), mfs16380, capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{`version "2.1" is not 2.0`},
		},
		{
			name:   "no version",
			server: fakeWith(reply(hello(helloHeader, mfs16380, capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{`no "version" item`},
		},
		{
			name:   "max-frame-size 255",
			server: fakeWith(reply(hello(helloHeader, version20, kv("max-frame-size", codec.Uint32(255)), capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{"max-frame-size 255 is outside 256..16380"},
		},
		{
			name:   "max-frame-size above the offer",
			server: fakeWith(reply(hello(helloHeader, version20, kv("max-frame-size", codec.Uint32(65532)), capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{"max-frame-size 65532 is outside 256..16380"},
		},
		{
			name:   "no max-frame-size",
			server: fakeWith(reply(hello(helloHeader, version20, capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{`no "max-frame-size" item`},
		},
		{
			name:   "no capabilities",
			server: fakeWith(reply(hello(helloHeader, version20, mfs16380))),
			code:   exitUnhealthy,
			stderr: []string{`no "capabilities" item`},
		},
		{
			name:   "FIN not set",
			server: fakeWith(reply(hello(codec.Header{Type: codec.FrameAgentHello}, version20, mfs16380, capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{"FLAGS are 0x00000000; HAProxy 3.2 requires exactly 0x00000001"},
		},
		{
			name:   "reserved flag bit set",
			server: fakeWith(reply(hello(codec.Header{Type: codec.FrameAgentHello, Flags: codec.FlagFin | 0x100}, version20, mfs16380, capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{"FLAGS are 0x00000101"},
		},
		{
			name:   "non-zero ids",
			server: fakeWith(reply(hello(codec.Header{Type: codec.FrameAgentHello, Flags: codec.FlagFin, StreamID: 1}, version20, mfs16380, capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{"stream-id 1 and frame-id 0"},
		},
		{
			name:   "truncated item",
			server: fakeWith(reply(codec.AppendFrame(nil, helloHeader, []byte{0x07, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x08, 0x03, '2'}))),
			code:   exitUnhealthy,
			stderr: []string{"malformed AGENT-HELLO payload"},
		},
		{
			name:   "max-frame-size of a non-integer type",
			server: fakeWith(reply(hello(helloHeader, version20, kv("max-frame-size", codec.String("16380")), capsPipe))),
			code:   exitUnhealthy,
			stderr: []string{"malformed AGENT-HELLO payload", "wrong data type"},
		},
		{
			// Despite its name, this captured frame has an empty capabilities
			// item, which HAProxy accepts.
			name:   "real HAProxy vector: AGENT-HELLO announcing no capability",
			server: fakeWith(reply(mustVector("3.2", "agent-hello-no-capabilities"))),
			code:   exitHealthy,
			stdout: []string{`max-frame-size 16380, capabilities ""`},
		},
		{
			name:   "real HAProxy vector: AGENT-HELLO with a bad max-frame-size",
			server: fakeWith(reply(mustVector("3.2", "agent-hello-bad-max-frame-size"))),
			code:   exitUnhealthy,
			stderr: []string{"max-frame-size"},
		},
		{
			name:   "real HAProxy vector: AGENT-HELLO with an unsupported version",
			server: fakeWith(reply(mustVector("3.2", "agent-hello-unsupported-version"))),
			code:   exitUnhealthy,
			stderr: []string{"is not 2.0"},
		},
		// Usage.
		{name: "no command", code: exitUsage, stderr: []string{"no command given", "Usage: spoe-forge <command>"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: []string{`unknown command "frobnicate"`}},
		{name: "help for an unknown command", args: []string{"help", "frobnicate"}, code: exitUsage, stderr: []string{`unknown command "frobnicate"`}},
		{name: "unknown flag", args: []string{"healthcheck", "--bogus"}, code: exitUsage, stderr: []string{"flag provided but not defined: -bogus", "--help"}},
		{name: "port 0", args: []string{"healthcheck", "--port", "0"}, code: exitUsage, stderr: []string{"--port 0 is out of range 1..65535"}},
		{name: "port 65536", args: []string{"healthcheck", "--port", "65536"}, code: exitUsage, stderr: []string{"--port 65536 is out of range"}},
		{name: "negative port", args: []string{"healthcheck", "--port=-1"}, code: exitUsage, stderr: []string{"--port -1 is out of range"}},
		{name: "port not a number", args: []string{"healthcheck", "--port", "http"}, code: exitUsage, stderr: []string{`invalid value "http" for flag -port`}},
		{name: "bad duration", args: []string{"healthcheck", "--timeout", "soon"}, code: exitUsage, stderr: []string{`invalid value "soon" for flag -timeout`}},
		{name: "zero timeout", args: []string{"healthcheck", "--timeout", "0s"}, code: exitUsage, stderr: []string{"--timeout 0s must be positive"}},
		{name: "negative timeout", args: []string{"healthcheck", "--timeout=-1s"}, code: exitUsage, stderr: []string{"--timeout -1s must be positive"}},
		{name: "empty host", args: []string{"healthcheck", "--host", ""}, code: exitUsage, stderr: []string{"--host must not be empty"}},
		{name: "extra argument", args: []string{"healthcheck", "127.0.0.1"}, code: exitUsage, stderr: []string{`unexpected argument "127.0.0.1"`}},
		{name: "flag without value", args: []string{"healthcheck", "--port"}, code: exitUsage, stderr: []string{"flag needs an argument: -port"}},
		// Help.
		{name: "--help", args: []string{"--help"}, code: exitHealthy, stdout: []string{"Usage: spoe-forge <command>", "healthcheck"}},
		{name: "-h", args: []string{"-h"}, code: exitHealthy, stdout: []string{"Usage: spoe-forge <command>"}},
		{name: "help", args: []string{"help"}, code: exitHealthy, stdout: []string{"Usage: spoe-forge <command>"}},
		{name: "help healthcheck", args: []string{"help", "healthcheck"}, code: exitHealthy, stdout: []string{"Usage: spoe-forge healthcheck"}},
		{name: "healthcheck --help", args: []string{"healthcheck", "--help"}, code: exitHealthy, stdout: []string{"Usage: spoe-forge healthcheck", "--timeout duration", "(default 2s)", "Exit status: 0 healthy, 1 unhealthy, 2 bad usage"}},
		{name: "healthcheck -h", args: []string{"healthcheck", "-h"}, code: exitHealthy, stdout: []string{"Usage: spoe-forge healthcheck"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.server != nil {
				port := c.server(t)
				args = append([]string{"healthcheck", "--port", strconv.Itoa(port)}, c.args...)
			}
			var stdout, stderr bytes.Buffer
			code := run(args, nil, &stdout, &stderr)
			require.Equal(t, c.code, code, "exit status; stdout %q, stderr %q", stdout.String(), stderr.String())
			requireOutput(t, "stdout", stdout.String(), c.stdout)
			requireOutput(t, "stderr", stderr.String(), c.stderr)
			if code != exitUsage && c.server != nil {
				// One line, on the stream that matches the verdict.
				out := stdout.String() + stderr.String()
				require.Equal(t, 1, strings.Count(out, "\n"), "output %q", out)
			}
			if c.quietCheck {
				stdout.Reset()
				stderr.Reset()
				require.Equal(t, c.code, run(append(args, "--quiet"), nil, &stdout, &stderr))
				require.Empty(t, stdout.String())
				require.Empty(t, stderr.String())
			}
		})
	}
}

func requireOutput(t *testing.T, stream, got string, want []string) {
	t.Helper()
	if len(want) == 0 {
		require.Empty(t, got, "%s", stream)
		return
	}
	for _, w := range want {
		require.Contains(t, got, w, "%s", stream)
	}
}

// mustVector reads a captured frame; it panics when the file is missing,
// which the vector test above reports better.
func mustVector(version, name string) []byte {
	text, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors", version, name+".hex"))
	if err != nil {
		panic(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		panic(err)
	}
	return b
}

// TestTimeoutBoundsTheWholeCheck checks that --timeout also bounds a peer
// that answers one byte and then stalls.
func TestTimeoutBoundsTheWholeCheck(t *testing.T) {
	port := startFake(t, func(c net.Conn) {
		_, _ = c.Write([]byte{0})
		_, _ = io.Copy(io.Discard, c)
	})
	start := time.Now()
	var stdout, stderr bytes.Buffer
	code := run([]string{"healthcheck", "--port", strconv.Itoa(port), "--timeout", "300ms"}, nil, &stdout, &stderr)
	require.Equal(t, exitUnhealthy, code)
	require.Contains(t, stderr.String(), "inside a length prefix: no answer within 300ms")
	require.Less(t, time.Since(start), 3*time.Second)
}
