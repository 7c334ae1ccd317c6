package codec_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// benchNotifyFrame is a realistic NOTIFY: message check-request with a
// client address, a ~30-byte path, a ~100-byte User-Agent, a host and a
// port, as HAProxy encodes them (whole frame, prefix included).
var benchNotifyFrame = func() []byte {
	payload, err := codec.AppendMessage(nil, "check-request",
		codec.Arg{Name: []byte("ip"), Value: codec.Addr(netip.MustParseAddr("192.0.2.33"))},
		codec.Arg{Name: []byte("path"), Value: codec.String("/api/v1/orders/123456?expand=1")},
		codec.Arg{Name: []byte("user-agent"), Value: codec.String("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")},
		codec.Arg{Name: []byte("host"), Value: codec.String("shop.example.com")},
		codec.Arg{Name: []byte("port"), Value: codec.Int64(8080)},
	)
	if err != nil {
		panic(err)
	}
	return codec.AppendFrame(nil, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 43, FrameID: 1}, payload)
}()

var benchArgNames = []string{"ip", "path", "user-agent", "host", "port"}

// decodeNotify is the agent's hot path for one frame: split it, decode the
// NOTIFY into a reused Notify, find the message and read every argument by
// name. It reports whether everything was found.
func decodeNotify(n *codec.Notify, wire []byte) bool {
	frame, _, _, err := codec.NextFrame(wire, codec.DefaultMaxFrameSize)
	if err != nil || frame == nil {
		return false
	}
	f, err := codec.ParseFrame(frame)
	if err != nil || f.Type != codec.FrameNotify {
		return false
	}
	if err := n.Decode(f.Payload); err != nil {
		return false
	}
	m, ok := n.Message("check-request")
	if !ok {
		return false
	}
	for _, name := range benchArgNames {
		v, ok := m.Arg(name)
		if !ok {
			return false
		}
		switch v.Type() {
		case codec.TypeIPv4:
			if _, ok := v.Addr(); !ok {
				return false
			}
		case codec.TypeString:
			if b, ok := v.Bytes(); !ok || len(b) == 0 {
				return false
			}
		case codec.TypeInt64:
			if _, ok := v.Int(); !ok {
				return false
			}
		}
	}
	return true
}

// encodeAck appends the agent's answer: an ACK with three set-vars, built
// in place with BeginFrame/FinishFrame.
func encodeAck(dst []byte, sid, fid uint64) ([]byte, error) {
	dst, start := codec.BeginFrame(dst, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: sid, FrameID: fid})
	var err error
	if dst, err = codec.AppendSetVar(dst, codec.ScopeTransaction, "score", codec.Int32(87)); err != nil {
		return dst[:start], err
	}
	if dst, err = codec.AppendSetVar(dst, codec.ScopeTransaction, "blocked", codec.Bool(true)); err != nil {
		return dst[:start], err
	}
	if dst, err = codec.AppendSetVar(dst, codec.ScopeTransaction, "reason", codec.String("rate-limited")); err != nil {
		return dst[:start], err
	}
	if _, err = codec.FinishFrame(dst, start, codec.DefaultMaxFrameSize-1); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

func BenchmarkNotifyDecode(b *testing.B) {
	var n codec.Notify
	if !decodeNotify(&n, benchNotifyFrame) {
		b.Fatal("decode failed")
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchNotifyFrame)))
	for b.Loop() {
		if !decodeNotify(&n, benchNotifyFrame) {
			b.Fatal("decode failed")
		}
	}
}

func BenchmarkAckEncode(b *testing.B) {
	buf, err := encodeAck(nil, 43, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if buf, err = encodeAck(buf[:0], 43, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// benchVarints covers 1-, 2-, 3-, 5- and 10-byte encodings.
var benchVarints = []uint64{7, 404, 16380, 4_000_000_000, 1<<64 - 5}

func BenchmarkVarintAppend(b *testing.B) {
	buf := make([]byte, 0, 64)
	n := 0
	for _, v := range benchVarints {
		n += codec.VarintLen(v)
	}
	b.ReportAllocs()
	b.SetBytes(int64(n))
	for b.Loop() {
		buf = buf[:0]
		for _, v := range benchVarints {
			buf = codec.AppendVarint(buf, v)
		}
	}
}

func BenchmarkVarintParse(b *testing.B) {
	var enc []byte
	for _, v := range benchVarints {
		enc = codec.AppendVarint(enc, v)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		for rest := enc; len(rest) > 0; {
			_, n, err := codec.ParseVarint(rest)
			if err != nil {
				b.Fatal(err)
			}
			rest = rest[n:]
		}
	}
}

// BenchmarkNotifyDecodeBody decodes a NOTIFY carrying a 12000-byte body
// captured from HAProxy: decoding aliases the body, so the cost should not
// grow with it.
func BenchmarkNotifyDecodeBody(b *testing.B) {
	wire := loadVector(b, "3.2/notify-body-12000.hex")
	f, err := codec.DecodeFrame(wire, codec.MaxFrameLen)
	if err != nil {
		b.Fatal(err)
	}
	var n codec.Notify
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		if err := n.Decode(f.Payload); err != nil {
			b.Fatal(err)
		}
	}
	if !strings.Contains(string(n.Messages[1].Name), "bigbody") {
		b.Fatal("wrong message")
	}
}

// benchHeaders is the req.hdrs_bin block of a browser's request: 14
// headers, Authorization last.
var benchHeaders = codec.Headers(func() []byte {
	var b []byte
	for _, kv := range [][2]string{
		{"host", "shop.example.com"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		{"accept-language", "en-US,en;q=0.5"},
		{"accept-encoding", "gzip, deflate, br"},
		{"referer", "https://shop.example.com/cart"},
		{"cookie", "session=3f2a1b; theme=dark"},
		{"upgrade-insecure-requests", "1"},
		{"sec-fetch-dest", "document"},
		{"sec-fetch-mode", "navigate"},
		{"sec-fetch-site", "same-origin"},
		{"x-forwarded-for", "192.0.2.33"},
		{"x-request-id", "5f0c6a7e-2b1d-4c1e-9a43-0a7d4b1e9f21"},
		{"authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"},
	} {
		b = codec.AppendHeaderPair(b, kv[0], kv[1])
	}
	return codec.AppendHeadersEnd(b)
}())

// BenchmarkHeadersGet looks up the last header of a 14-header block, in
// another case than HAProxy's.
func BenchmarkHeadersGet(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHeaders)))
	for i := 0; i < b.N; i++ {
		if v, ok := benchHeaders.Get("Authorization"); !ok || len(v) == 0 {
			b.Fatal("not found")
		}
	}
}

// BenchmarkNotifyDecodeTwoArgs is the shape of a typical handler: decode the
// NOTIFY and read two of its arguments (the client address and the path).
func BenchmarkNotifyDecodeTwoArgs(b *testing.B) {
	frame, _, _, err := codec.NextFrame(benchNotifyFrame, codec.DefaultMaxFrameSize)
	if err != nil {
		b.Fatal(err)
	}
	f, err := codec.ParseFrame(frame)
	if err != nil {
		b.Fatal(err)
	}
	var n codec.Notify
	b.ReportAllocs()
	for b.Loop() {
		if err := n.Decode(f.Payload); err != nil {
			b.Fatal(err)
		}
		m := &n.Messages[0]
		ip, ok1 := m.Arg(benchArgNames[0])
		path, ok2 := m.Arg(benchArgNames[1])
		if !ok1 || !ok2 || ip.Type() == codec.TypeNull || path.Type() == codec.TypeNull {
			b.Fatal("missing")
		}
		n.Reset()
	}
}
