package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readVector(t *testing.T, branch, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors", branch, name+".hex"))
	require.NoError(t, err)
	out, err := hex.DecodeString(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return out
}

// bodyHasher records the sha256 of each msg-bigbody body it sees.
func bodyHasher(a *agent.Agent) <-chan string {
	sums := make(chan string, 16)
	a.Message("msg-bigbody", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		b, _ := m.Bytes("body")
		sum := sha256.Sum256(b)
		sums <- hex.EncodeToString(sum[:])
		act.SetString(agent.ScopeTransaction, "sha", hex.EncodeToString(sum[:]))
		return nil
	})
	return sums
}

// TestFragmentReassembly feeds the three fragments HAProxy 2.6 and 3.0 sent
// for a 10000-byte body (agent max-frame-size 4096), whole and then split at
// every byte position across writes.
func TestFragmentReassembly(t *testing.T) {
	const want = "3421d9aa928a94decb191ab8e8b76c1d8434bf602c5b3ba10ad42f54c8199c34" // manifest: reassembled body sha256
	for _, branch := range []string{"2.6", "3.0"} {
		var stream []byte
		for _, n := range []string{"notify-fragment-1-of-3", "notify-fragment-2-of-3", "notify-fragment-3-of-3"} {
			stream = append(stream, readVector(t, branch, n)...)
		}
		first, err := codec.DecodeFrame(readVector(t, branch, "notify-fragment-1-of-3"), codec.MaxFrameLen)
		require.NoError(t, err)

		t.Run(branch+"/whole", func(t *testing.T) {
			a := agent.New(agent.WithMaxFrameSize(4096))
			sums := bodyHasher(a)
			c := spoptest.Dial(t, start(t, a))
			h := c.Hello("pipelining,async", 16380)
			require.True(t, h.Capabilities.Has(codec.CapFragmentation))
			c.Write(stream)
			ack := c.ReadAck()
			assert.Equal(t, first.StreamID, ack.StreamID)
			assert.Equal(t, first.FrameID, ack.FrameID)
			assert.Equal(t, want, <-sums)
		})
		t.Run(branch+"/split at every byte", func(t *testing.T) {
			a := agent.New(agent.WithMaxFrameSize(4096))
			sums := bodyHasher(a)
			c := spoptest.Dial(t, start(t, a))
			c.Hello("pipelining,async", 16380)
			// One connection, many NOTIFYs: each time the stream is cut at
			// another offset (stepping through every offset of the frame
			// headers and, sparser, of the payloads to keep the test short).
			var cuts []int
			for i := 1; i < len(stream); i++ {
				if i < 32 || i%97 == 0 || isBoundary(stream, i) {
					cuts = append(cuts, i)
				}
			}
			for _, cut := range cuts {
				c.Write(stream[:cut])
				c.Write(stream[cut:])
				ack := c.ReadAck()
				require.Equal(t, first.StreamID, ack.StreamID)
				require.Equal(t, want, <-sums, "cut at %d", cut)
			}
		})
	}
}

// isBoundary reports whether i is within 12 bytes of a frame start.
func isBoundary(stream []byte, i int) bool {
	for off := 0; off+4 <= len(stream); {
		n := int(stream[off])<<24 | int(stream[off+1])<<16 | int(stream[off+2])<<8 | int(stream[off+3])
		if i >= off && i < off+12 {
			return true
		}
		off += 4 + n
	}
	return false
}

func fragment(t codec.FrameType, flags codec.Flags, sid, fid uint64, payload []byte) []byte {
	return codec.AppendFrame(nil, codec.Header{Type: t, Flags: flags, StreamID: sid, FrameID: fid}, payload)
}

func TestFragmentEdgeCases(t *testing.T) {
	payload := spoptest.NotifyPayload(spoptest.Msg{Name: "msg-bigbody", Args: []codec.Arg{
		spoptest.A("body", codec.Binary([]byte(strings.Repeat("x", 3000)))),
	}})
	sum := sha256.Sum256([]byte(strings.Repeat("x", 3000)))
	want := hex.EncodeToString(sum[:])
	t.Run("abort then a new message", func(t *testing.T) {
		a := agent.New()
		sums := bodyHasher(a)
		c := spoptest.Dial(t, start(t, a))
		c.Hello("pipelining", 16380)
		c.Write(fragment(codec.FrameNotify, 0, 5, 1, payload[:100]))
		c.Write(fragment(codec.FrameUnset, codec.FlagFin|codec.FlagAbort, 5, 1, nil))
		// An ABORT of nothing in progress is tolerated.
		c.Write(fragment(codec.FrameUnset, codec.FlagFin|codec.FlagAbort, 9, 9, nil))
		c.Write(fragment(codec.FrameNotify, codec.FlagFin, 5, 1, payload))
		ack := c.ReadAck()
		assert.Equal(t, uint64(5), ack.StreamID)
		assert.Equal(t, want, <-sums)
	})
	t.Run("interleaved streams", func(t *testing.T) {
		a := agent.New()
		sums := bodyHasher(a)
		c := spoptest.Dial(t, start(t, a))
		c.Hello("pipelining", 16380)
		c.Write(fragment(codec.FrameNotify, 0, 1, 1, payload[:1000]))
		c.Write(fragment(codec.FrameNotify, 0, 2, 1, payload[:1500]))
		c.Write(fragment(codec.FrameUnset, 0, 1, 1, payload[1000:2000]))
		c.Write(fragment(codec.FrameUnset, codec.FlagFin, 2, 1, payload[1500:]))
		c.Write(fragment(codec.FrameUnset, codec.FlagFin, 1, 1, payload[2000:]))
		got := map[uint64]bool{}
		for range 2 {
			got[c.ReadAck().StreamID] = true
			assert.Equal(t, want, <-sums)
		}
		assert.Equal(t, map[uint64]bool{1: true, 2: true}, got)
	})
	for _, tc := range []struct {
		name   string
		opts   []agent.Option
		frames [][]byte
		status codec.Status
	}{
		{"fragment without fragmentation", []agent.Option{agent.WithFragmentation(false)},
			[][]byte{fragment(codec.FrameNotify, 0, 1, 1, payload[:100])}, codec.StatusFragNotSupported},
		{"continuation without fragmentation", []agent.Option{agent.WithFragmentation(false)},
			[][]byte{fragment(codec.FrameUnset, codec.FlagFin, 1, 1, payload[:100])}, codec.StatusFragNotSupported},
		{"continuation of nothing", nil,
			[][]byte{fragment(codec.FrameUnset, codec.FlagFin, 1, 1, payload[:100])}, codec.StatusInterlaced},
		{"same ids restarted", nil,
			[][]byte{fragment(codec.FrameNotify, 0, 1, 1, payload[:100]), fragment(codec.FrameNotify, 0, 1, 1, payload[:100])}, codec.StatusInterlaced},
		{"reassembled past the cap", []agent.Option{agent.WithMaxMessageSize(2048)},
			[][]byte{fragment(codec.FrameNotify, 0, 1, 1, payload[:1500]), fragment(codec.FrameUnset, 0, 1, 1, payload[1500:])}, codec.StatusFrameTooBig},
		{"reassembled message malformed", nil,
			[][]byte{fragment(codec.FrameNotify, 0, 1, 1, payload[:100]), fragment(codec.FrameUnset, codec.FlagFin, 1, 1, nil)}, codec.StatusInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent.New(tc.opts...)
			bodyHasher(a)
			c := spoptest.Dial(t, start(t, a))
			c.Hello("pipelining", 16380)
			for _, f := range tc.frames {
				c.Write(f)
			}
			d := c.ReadDisconnect()
			assert.Equal(t, tc.status, d.Status, "message %q", d.Message)
			c.ExpectClosed()
		})
	}
}

// TestAsyncReroute: with async, an ACK whose connection died leaves on
// another connection of the same engine.
func TestAsyncReroute(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	a := agent.New(agent.WithAsync(true), agent.WithTimeout(10*time.Second))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		once.Do(func() { close(started) })
		<-release
		act.SetString(agent.ScopeTransaction, "from", "handler")
		return nil
	})
	addr := start(t, a)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	c1 := spoptest.Dial(t, addr)
	h := c1.Hello("pipelining,async", 16380)
	require.True(t, h.Capabilities.Has(codec.CapAsync))
	c2 := spoptest.Dial(t, addr)
	c2.Hello("pipelining,async", 16380)
	c1.Notify(42, 7, spoptest.Msg{Name: "m"})
	<-started
	require.NoError(t, c1.NC.Close()) // the NOTIFY's own connection dies
	require.Eventually(t, func() bool { return a.Connections() == 1 }, 5*time.Second, time.Millisecond, "connections: %d", a.Connections())
	close(release)
	ack := c2.ReadAck()
	assert.Equal(t, uint64(42), ack.StreamID)
	assert.Equal(t, uint64(7), ack.FrameID)
	_, ok := ack.Var("from")
	assert.True(t, ok)
}
