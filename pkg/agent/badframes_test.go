package agent_test

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

var updateBad = flag.Bool("update-badframes", false, "rewrite testdata/badframes from the generator")

// badCase is one malformed input of the corpus in testdata/badframes.
type badCase struct {
	Name string `json:"name"`
	// Hello is the HAPROXY-HELLO sent first: "" for none, else its
	// capabilities ("-" for the empty list).
	Hello string `json:"hello"`
	// Status is the AGENT-DISCONNECT status expected; -1 means the input is
	// tolerated: the connection must stay and answer a NOTIFY sent after it.
	Status int `json:"status"`
	// HalfClose: the client closes its write side after the input.
	HalfClose bool `json:"half_close,omitempty"`
	// Agent options the case needs.
	NoFragmentation bool   `json:"no_fragmentation,omitempty"`
	MaxMessageSize  int    `json:"max_message_size,omitempty"`
	File            string `json:"file"`
	input           []byte
}

const badDir = "../../testdata/badframes"

func frame(t codec.FrameType, flags codec.Flags, sid, fid uint64, payload []byte) []byte {
	return codec.AppendFrame(nil, codec.Header{Type: t, Flags: flags, StreamID: sid, FrameID: fid}, payload)
}

// rawFrame builds a frame from raw bytes after the length prefix.
func rawFrame(b ...byte) []byte {
	n := len(b)
	return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, b...)
}

func helloPayload(kv ...[]byte) []byte {
	var p []byte
	for _, x := range kv {
		p = append(p, x...)
	}
	return p
}

func kv(name string, v codec.Value) []byte { return codec.AppendKV(nil, name, v) }

// generateBadCases is the source of the corpus.
func generateBadCases() []badCase {
	fin := codec.FlagFin
	N := codec.FrameNotify
	ver := kv("supported-versions", codec.String("2.0"))
	mfs := kv("max-frame-size", codec.Uint32(16380))
	caps := kv("capabilities", codec.String("pipelining"))
	goodHello := helloPayload(ver, mfs, caps)
	msg := func(args ...codec.Arg) []byte {
		p, _ := codec.AppendMessage(nil, "m", args...)
		return p
	}
	nb := func(b ...byte) []byte { return frame(N, fin, 1, 1, b) } // a NOTIFY with a raw payload
	var cs []badCase
	add := func(name, hello string, status int, input []byte) *badCase {
		cs = append(cs, badCase{Name: name, Hello: hello, Status: status, input: input})
		return &cs[len(cs)-1]
	}
	const (
		tooBig   = int(codec.StatusFrameTooBig)
		invalid  = int(codec.StatusInvalid)
		noFrag   = int(codec.StatusFragNotSupported)
		tolerate = -1
	)
	// Before any HELLO.
	add("garbage text", "", tooBig, []byte("hello, is anybody there?\n"))
	add("HTTP request", "", tooBig, []byte("GET / HTTP/1.1\r\nHost: agent\r\n\r\n"))
	add("TLS ClientHello", "", tooBig, append([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, make([]byte, 32)...))
	add("LENGTH 0", "", invalid, []byte{0, 0, 0, 0})
	for n := 1; n <= 6; n++ {
		add("LENGTH "+string(rune('0'+n)), "", invalid, append([]byte{0, 0, 0, byte(n)}, make([]byte, n)...))
	}
	add("LENGTH limit+1 before HELLO", "", tooBig, []byte{0, 0, 0x3f, 0xfd, 1})
	add("LENGTH 2^32-1", "", tooBig, []byte{0xff, 0xff, 0xff, 0xff, 1})
	add("NOTIFY before HELLO", "", invalid, frame(N, fin, 1, 1, msg()))
	add("AGENT-HELLO from HAProxy", "", invalid, codec.AppendAgentHello(nil, 16380, 0))
	add("DISCONNECT before HELLO", "", invalid, codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, 0, "normal"))
	add("HELLO stream-id truncated", "", invalid, rawFrame(1, 0, 0, 0, 1, 0xf0, 0x80))
	add("HELLO frame-id overflows", "", invalid, rawFrame(1, 0, 0, 0, 1, 0, 0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0f))
	add("HELLO frame-id 11 bytes", "", invalid, rawFrame(1, 0, 0, 0, 1, 0, 0xf0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00))
	add("HELLO with stream-id 1", "", invalid, frame(codec.FrameHAProxyHello, fin, 1, 0, goodHello))
	add("HELLO without FIN", "", noFrag, frame(codec.FrameHAProxyHello, 0, 0, 0, goodHello))
	add("HELLO item cut in the name length", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, append(append([]byte{}, goodHello...), 0xf5)))
	add("HELLO item cut in the name", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, append(append([]byte{}, goodHello...), 12, 'c', 'a', 'p')))
	add("HELLO item cut before its value", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, append(append([]byte{}, goodHello...), 3, 'a', 'b', 'c')))
	add("HELLO integer value truncated", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(ver, []byte("\x0emax-frame-size\x03\xfc\xf0"))))
	add("HELLO integer value overflows", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(ver, []byte("\x0emax-frame-size\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"))))
	add("HELLO string past the end", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(mfs, []byte("\x12supported-versions\x08\x40\x32"))))
	add("HELLO unknown data type", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(ver, mfs, []byte("\x03new\x0a"))))
	add("HELLO version 3.0 only", "", int(codec.StatusBadVersion), frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(kv("supported-versions", codec.String("3.0")), mfs, caps)))
	add("HELLO without versions", "", int(codec.StatusBadVersion), frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(mfs, caps)))
	add("HELLO without max-frame-size", "", int(codec.StatusNoFrameSize), frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(ver, caps)))
	add("HELLO max-frame-size 100", "", int(codec.StatusBadFrameSize), frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(ver, kv("max-frame-size", codec.Uint32(100)), caps)))
	add("HELLO max-frame-size as a string", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(ver, kv("max-frame-size", codec.String("16380")), caps)))
	add("HELLO healthcheck as an int", "", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, helloPayload(ver, mfs, caps, kv("healthcheck", codec.Int64(1)))))
	// After a HELLO.
	add("second HELLO", "pipelining", invalid, frame(codec.FrameHAProxyHello, fin, 0, 0, goodHello))
	add("unknown type on stream 0", "pipelining", invalid, frame(42, fin, 0, 0, nil))
	add("unknown type on a stream", "pipelining", tolerate, frame(42, fin, 5, 1, []byte("whatever")))
	add("ACK from HAProxy on a stream", "pipelining", tolerate, codec.AppendAck(nil, 3, 1, nil))
	add("LENGTH limit+1 after HELLO", "pipelining", tooBig, []byte{0, 0, 0x3f, 0xfd, 3})
	add("LENGTH 2^32-1 after HELLO", "pipelining", tooBig, []byte{0xff, 0xff, 0xff, 0xff, 3})
	add("LENGTH 0 after HELLO", "pipelining", invalid, []byte{0, 0, 0, 0})
	add("NOTIFY frame-id truncated", "pipelining", invalid, rawFrame(3, 0, 0, 0, 1, 1, 0xf5))
	add("NOTIFY stream-id overflows", "pipelining", invalid, rawFrame(3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1))
	add("NOTIFY message name past the end", "pipelining", invalid, nb(0x20, 'm'))
	add("NOTIFY without nb-args", "pipelining", invalid, nb(1, 'm'))
	add("NOTIFY nb-args past the payload", "pipelining", invalid, nb(1, 'm', 200))
	add("NOTIFY arg name cut", "pipelining", invalid, nb(1, 'm', 1, 5, 'a', 'b'))
	add("NOTIFY arg without a value", "pipelining", invalid, nb(1, 'm', 1, 1, 'a'))
	add("NOTIFY unknown data type 11", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0x0b))
	add("NOTIFY unknown data type 15 with flags", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0xff))
	add("NOTIFY string past the end", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0x08, 0x10, 'x'))
	add("NOTIFY binary length huge", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0x09, 0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e))
	add("NOTIFY int truncated", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0x04, 0xf0, 0x80))
	add("NOTIFY int overflows", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0x04, 0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0f))
	add("NOTIFY ipv4 cut", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0x06, 127, 0))
	add("NOTIFY ipv6 cut", "pipelining", invalid, nb(1, 'm', 1, 1, 'a', 0x07, 0x20, 0x01, 0x0d, 0xb8))
	add("NOTIFY second message cut", "pipelining", invalid, frame(N, fin, 1, 1, append(msg(), 2, 'n')))
	c := add("fragment without fragmentation", "pipelining", noFrag, frame(N, 0, 1, 1, msg()))
	c.NoFragmentation = true
	c = add("continuation without fragmentation", "pipelining", noFrag, frame(codec.FrameUnset, fin, 1, 1, msg()))
	c.NoFragmentation = true
	add("continuation of an unknown stream", "pipelining", int(codec.StatusInterlaced), frame(codec.FrameUnset, fin, 9, 9, []byte{1}))
	add("restart of a fragmented stream", "pipelining", int(codec.StatusInterlaced), append(frame(N, 0, 1, 1, []byte{1}), frame(N, 0, 1, 1, []byte{1})...))
	add("ABORT without a start", "pipelining", tolerate, frame(codec.FrameUnset, fin|codec.FlagAbort, 7, 7, nil))
	c = add("reassembled past the size cap", "pipelining", tooBig, append(frame(N, 0, 1, 1, make([]byte, 6000)), frame(codec.FrameUnset, 0, 1, 1, make([]byte, 6000))...))
	c.MaxMessageSize = 8192
	add("reassembled message malformed", "pipelining", invalid, append(frame(N, 0, 1, 1, []byte{1, 'm'}), frame(codec.FrameUnset, fin, 1, 1, []byte{9})...))
	add("too many fragmented NOTIFYs", "pipelining", int(codec.StatusResource), func() []byte {
		var b []byte
		for i := range 17 {
			b = append(b, frame(N, 0, uint64(i+1), 1, []byte{1})...)
		}
		return b
	}())
	add("DISCONNECT with a cut payload", "pipelining", int(codec.StatusNormal), frame(codec.FrameHAProxyDisconnect, fin, 0, 0, []byte{0x0b, 's', 't'}))
	add("DISCONNECT with an empty payload", "pipelining", int(codec.StatusNormal), frame(codec.FrameHAProxyDisconnect, fin, 0, 0, nil))
	add("DISCONNECT with odd items", "pipelining", int(codec.StatusNormal), frame(codec.FrameHAProxyDisconnect, fin, 0, 0, helloPayload(kv("status-code", codec.String("x")), kv("extra", codec.Addr(netip.MustParseAddr("::1"))))))
	add("DISCONNECT with ids and a huge status", "pipelining", int(codec.StatusNormal), frame(codec.FrameHAProxyDisconnect, fin, 3, 3, helloPayload(kv("status-code", codec.Uint64(1<<40)), kv("message", codec.String(strings.Repeat("m", 1000))))))
	c = add("EOF inside a frame", "pipelining", int(codec.StatusIO), frame(N, fin, 1, 1, msg())[:12])
	c.HalfClose = true
	c = add("EOF inside a length", "pipelining", int(codec.StatusIO), []byte{0, 0})
	c.HalfClose = true
	for i := range cs {
		cs[i].File = fileName(cs[i].Name)
	}
	return cs
}

func fileName(name string) string {
	r := strings.NewReplacer(" ", "-", "/", "-", "^", "", "+", "plus")
	return strings.ToLower(r.Replace(name)) + ".hex"
}

func loadBadCases(t *testing.T) []badCase {
	t.Helper()
	if *updateBad {
		cs := generateBadCases()
		for _, c := range cs {
			require.NoError(t, os.WriteFile(filepath.Join(badDir, c.File), []byte(hex.EncodeToString(c.input)+"\n"), 0o644))
		}
		idx, err := json.MarshalIndent(cs, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(badDir, "index.json"), append(idx, '\n'), 0o644))
	}
	b, err := os.ReadFile(filepath.Join(badDir, "index.json"))
	require.NoError(t, err)
	var cs []badCase
	require.NoError(t, json.Unmarshal(b, &cs))
	names := map[string]bool{}
	for i := range cs {
		h, err := os.ReadFile(filepath.Join(badDir, cs[i].File))
		require.NoError(t, err)
		cs[i].input, err = hex.DecodeString(strings.TrimSpace(string(h)))
		require.NoError(t, err)
		require.False(t, names[cs[i].Name], "duplicate case %q", cs[i].Name)
		names[cs[i].Name] = true
	}
	return cs
}

// TestBadFrames sends every malformed input of the corpus to a live agent
// while a well-behaved connection keeps working, and checks for each the
// exact AGENT-DISCONNECT status (or the documented tolerance), that the
// connection is closed, that nothing was logged as a panic or an internal
// error, and that no large allocation happened.
func TestBadFrames(t *testing.T) { testBadFrames(t, plainTransport) }

// transport is how a test reaches the agent: the agent options it needs and
// how a client connects.
type transport struct {
	opts []agent.Option
	dial func(t *testing.T, addr string) *spoptest.Client
}

var plainTransport = transport{dial: func(t *testing.T, addr string) *spoptest.Client { return spoptest.Dial(t, addr) }}

func testBadFrames(t *testing.T, tr transport) {
	cases := loadBadCases(t)
	require.GreaterOrEqual(t, len(cases), 40)
	t.Logf("bad-input corpus: %d cases", len(cases))

	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			opts := append([]agent.Option{agent.WithLogger(zap.New(core)), agent.WithHelloTimeout(2 * time.Second)}, tr.opts...)
			if tc.NoFragmentation {
				opts = append(opts, agent.WithFragmentation(false))
			}
			if tc.MaxMessageSize > 0 {
				opts = append(opts, agent.WithMaxMessageSize(tc.MaxMessageSize))
			}
			a := agent.New(opts...)
			a.Message("m", echo)
			addr := start(t, a)

			// The well-behaved neighbour.
			good := tr.dial(t, addr)
			good.Hello("pipelining", 16380)
			var served atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := uint64(1); ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := good.NC.Write(spoptest.NotifyFrame(i, 1, spoptest.Msg{Name: "m"})); err != nil {
						return
					}
					if f, err := good.TryReadFrame(); err != nil || f.Type != codec.FrameAck || f.StreamID != i {
						return
					}
					served.Add(1)
				}
			}()

			var before runtime.MemStats
			runtime.ReadMemStats(&before)

			c := tr.dial(t, addr)
			switch tc.Hello {
			case "":
			case "-":
				c.Hello("", 16380)
			default:
				c.Hello(tc.Hello, 16380)
			}
			c.Write(tc.input)
			if tc.HalfClose {
				require.NoError(t, c.NC.(interface{ CloseWrite() error }).CloseWrite())
			}
			if tc.Status < 0 {
				// Tolerated: the connection lives on and answers.
				c.Notify(1000, 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("id", codec.String("after"))}})
				ack := c.ReadAck()
				assert.Equal(t, uint64(1000), ack.StreamID)
			} else {
				d := c.ReadDisconnect()
				assert.Equal(t, codec.Status(tc.Status), d.Status, "message %q", d.Message)
				c.ExpectClosed()
			}

			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			// A bogus length must never size a buffer: the whole case
			// (both connections included) allocates far less than 4 MiB.
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<20), "allocated during the case")

			// The neighbour kept being served throughout.
			n := served.Load()
			require.Eventually(t, func() bool { return served.Load() > n+10 }, 5*time.Second, time.Millisecond, "the well-behaved connection stalled")
			close(stop)
			wg.Wait()

			for _, e := range logs.All() {
				assert.NotContains(t, e.Message, "panic", "logged: %s %v", e.Message, e.ContextMap())
				assert.Less(t, e.Level, zapcore.ErrorLevel, "logged: %s %v", e.Message, e.ContextMap())
			}
		})
	}
}
