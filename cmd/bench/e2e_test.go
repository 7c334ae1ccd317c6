package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

// startAgent serves a spoe-forge agent with the benchmark handler on a
// loopback port until the test ends.
func startAgent(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveBench(t, l)
	return l.Addr().String()
}

func baseConfig(addr string) config {
	return config{
		addr: addr, conns: 2, pipeline: 8,
		warmup: 50 * time.Millisecond, duration: 200 * time.Millisecond,
		profile: profileCheck, caps: "pipelining", mfs: 16380, ids: ids32,
		expect: []string{"score", "ok"}, timeout: 500 * time.Millisecond,
	}
}

// TestAgainstSpoeForge runs short loads against an in-process spoe-forge
// agent: no errors, some throughput, latencies recorded.
func TestAgainstSpoeForge(t *testing.T) {
	addr := startAgent(t)
	for _, tc := range []struct {
		name string
		mod  func(*config)
	}{
		{"closed loop, 3.2 and 3.4 ids", func(*config) {}},
		{"closed loop, 2.6 ids, 4 KiB body", func(c *config) {
			c.ids, c.caps, c.profile = ids26, "pipelining,async", profileBody4K
		}},
		{"fragmented large body", func(c *config) {
			c.ids, c.caps, c.profile, c.largeSize = ids26, "pipelining,async,fragmentation", profileLarge, 40000
		}},
		{"open loop", func(c *config) { c.rate = 2000 }},
		{"-n", func(c *config) { c.n, c.duration = 500, 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(addr)
			tc.mod(&cfg)
			res, err := bench(context.Background(), cfg)
			require.NoError(t, err)
			require.Zero(t, res.Errors, "%v", res.ErrorsByKind)
			require.Positive(t, res.Notifies)
			require.Positive(t, res.NotifyPerSec)
			require.Positive(t, res.Latency.Count)
			require.Positive(t, res.Latency.P50)
			if cfg.profile == profileLarge {
				require.Contains(t, res.Caps, "fragmentation")
				require.Greater(t, res.FramesPer, 1)
			}
			if cfg.rate > 0 {
				require.Equal(t, "open", res.Mode)
				// 2000/s for 0.2 s: about 400, give or take scheduling.
				require.InDelta(t, 400, res.Notifies, 100)
				require.NotNil(t, res.SendLag)
			}
			if cfg.n > 0 {
				require.GreaterOrEqual(t, res.Notifies, cfg.n)
			}
		})
	}
}

// fakeAgent answers HELLO correctly, then acknowledges every NOTIFY with
// ids the NOTIFY did not have (the stream-id plus one thousand), as a buggy
// agent would. It returns its address.
func fakeAgent(t *testing.T, wrong func(sid, fid uint64) (uint64, uint64)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { _ = nc.Close() }()
				serveFake(nc, wrong)
			}()
		}
	}()
	return l.Addr().String()
}

func serveFake(nc net.Conn, wrong func(sid, fid uint64) (uint64, uint64)) {
	br := bufio.NewReader(nc)
	var out []byte
	acts, _ := codec.AppendSetVar(nil, codec.ScopeTransaction, "score", codec.Int64(1))
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		l, err := codec.ParseLength(hdr[:], 1<<20)
		if err != nil {
			return
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		f, err := codec.ParseFrame(b)
		if err != nil {
			return
		}
		switch f.Type {
		case codec.FrameHAProxyHello:
			out = codec.AppendAgentHello(out[:0], 16380, codec.CapPipelining)
		case codec.FrameNotify:
			sid, fid := wrong(f.StreamID, f.FrameID)
			out = codec.AppendAck(out[:0], sid, fid, acts)
		case codec.FrameHAProxyDisconnect:
			out = codec.AppendDisconnect(out[:0], codec.FrameAgentDisconnect, codec.StatusNormal, "bye")
			_, _ = nc.Write(out)
			return
		default:
			continue
		}
		if _, err := nc.Write(out); err != nil {
			return
		}
	}
}

// TestWrongIDsAreErrors runs against agents that answer with the wrong ids:
// every such ACK is counted, and the NOTIFYs it should have answered time
// out.
func TestWrongIDsAreErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrong func(sid, fid uint64) (uint64, uint64)
		kind  string
	}{
		{"stream-id", func(sid, fid uint64) (uint64, uint64) { return sid + 1000, fid }, "unknown_id"},
		{"frame-id", func(sid, fid uint64) (uint64, uint64) { return sid, fid + 1 }, "wrong_frame_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(fakeAgent(t, tc.wrong))
			cfg.expect = []string{"score"}
			cfg.timeout = 50 * time.Millisecond
			res, err := bench(context.Background(), cfg)
			require.Error(t, err, "nothing was acknowledged")
			require.NotNil(t, res)
			require.Zero(t, res.Notifies)
			require.Positive(t, res.ErrorsByKind[tc.kind])
			require.Positive(t, res.ErrorsByKind["timeout"], "the unanswered NOTIFYs time out")
			require.Equal(t, res.Errors, res.ErrorsByKind[tc.kind]+res.ErrorsByKind["timeout"])
		})
	}
}

// TestMissingVarIsError: right ids, but not the expected variable.
func TestMissingVarIsError(t *testing.T) {
	cfg := baseConfig(fakeAgent(t, func(sid, fid uint64) (uint64, uint64) { return sid, fid }))
	cfg.expect = []string{"score", "ok"} // the fake sets score only
	res, err := bench(context.Background(), cfg)
	require.Error(t, err)
	require.Positive(t, res.ErrorsByKind["missing_var"])
	require.Zero(t, res.Notifies, "an ACK missing a variable is not a success")

	cfg.expect = []string{"score"}
	res, err = bench(context.Background(), cfg)
	require.NoError(t, err)
	require.Zero(t, res.Errors)
}

func TestHelloRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer func() { _ = nc.Close() }()
		_, _ = nc.Read(make([]byte, 4096))
		_, _ = nc.Write(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusBadVersion, "no"))
	}()
	cfg := baseConfig(l.Addr().String())
	cfg.conns = 1
	_, err = bench(context.Background(), cfg)
	require.Error(t, err)
	require.Contains(t, err.Error(), "AGENT-DISCONNECT")
	require.False(t, errors.Is(err, context.Canceled))
}

// TestLateAckIsNotASecondError: an agent that answers after -timeout costs
// one timeout error per NOTIFY; its late ACK is counted apart.
func TestLateAckIsNotASecondError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer func() { _ = nc.Close() }()
		br := bufio.NewReader(nc)
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			ln, _ := codec.ParseLength(hdr[:], 1<<20)
			b := make([]byte, ln)
			if _, err := io.ReadFull(br, b); err != nil {
				return
			}
			f, _ := codec.ParseFrame(b)
			switch f.Type {
			case codec.FrameHAProxyHello:
				_, _ = nc.Write(codec.AppendAgentHello(nil, 16380, 0))
			case codec.FrameNotify:
				time.Sleep(120 * time.Millisecond) // past the 50 ms timeout
				_, _ = nc.Write(codec.AppendAck(nil, f.StreamID, f.FrameID, nil))
			default:
				return
			}
		}
	}()
	cfg := baseConfig(l.Addr().String())
	cfg.conns, cfg.expect, cfg.timeout = 1, nil, 50*time.Millisecond
	res, _ := bench(context.Background(), cfg)
	require.NotNil(t, res)
	require.Equal(t, 1, res.Window, "no pipelining negotiated: one NOTIFY at a time")
	require.Positive(t, res.ErrorsByKind["timeout"])
	require.Positive(t, res.LateAcks)
	require.Zero(t, res.ErrorsByKind["unknown_id"])
}
