package codec_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Decode the NOTIFY annotated in spop.md §5.5 and read its arguments.
func ExampleNotify_Decode() {
	wire, _ := hex.DecodeString("00000057030000000102010d636865636b2d7265717565737406" +
		"02697006" + "7f000001" +
		"0470617468" + "0802" + "2f78" +
		"027561" + "080b" + "6375726c2f372e38382e31" +
		"04626f6479" + "0905" + "68656c6c6f" +
		"08626f64795f6c656e" + "0405" +
		"04706f7274" + "04f8ac0a")

	frame, _, _, err := codec.NextFrame(wire, codec.DefaultMaxFrameSize)
	if err != nil || frame == nil {
		fmt.Println("incomplete or bad frame:", err)
		return
	}
	f, err := codec.ParseFrame(frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	var n codec.Notify // reuse it for every frame of a connection
	if err := n.Decode(f.Payload); err != nil {
		fmt.Println("status", codec.StatusOf(err), err)
		return
	}
	fmt.Println(f.Type, "stream", f.StreamID, "frame", f.FrameID)
	m, ok := n.Message("check-request")
	if !ok {
		return
	}
	ip, _ := m.Arg("ip")
	addr, _ := ip.Addr()
	path, _ := m.Arg("path")
	p, _ := path.String() // a copy: safe to keep
	port, _ := m.Arg("port")
	pn, _ := port.Int()
	_, found := m.Arg("cookie")
	fmt.Println(string(m.Name), len(m.Args), "args")
	fmt.Println("ip", addr, "path", p, "port", pn, "cookie", found)
	// Output:
	// NOTIFY stream 2 frame 1
	// check-request 6 args
	// ip 127.0.0.1 path /x port 23480 cookie false
}

// Build the ACK annotated in spop.md §5.6 directly in the output buffer.
func ExampleAppendSetVar() {
	var buf []byte // reused across frames
	buf, start := codec.BeginFrame(buf, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: 2, FrameID: 1})
	buf, _ = codec.AppendSetVar(buf, codec.ScopeTransaction, "score", codec.Int32(42))
	buf, _ = codec.AppendSetVar(buf, codec.ScopeTransaction, "blocked", codec.Bool(false))
	buf, _ = codec.AppendUnsetVar(buf, codec.ScopeTransaction, "foo")

	// A name HAProxy could not hold is refused and nothing is appended.
	buf, err := codec.AppendSetVar(buf, codec.ScopeTransaction, strings.Repeat("x", 64), codec.Null())
	fmt.Println(err)

	// Keep LENGTH at most the negotiated max-frame-size - 1.
	length, err := codec.FinishFrame(buf, start, codec.DefaultMaxFrameSize-1)
	if err != nil {
		buf = buf[:start] // too big: drop the frame, keep the connection
		return
	}
	fmt.Println("LENGTH", length)
	fmt.Printf("% x\n", buf[:11])
	fmt.Printf("% x\n", buf[11:])
	// Output:
	// spop: invalid frame received: variable name longer than 63 bytes
	// LENGTH 37
	// 00 00 00 25 67 00 00 00 01 02 01
	// 01 03 02 05 73 63 6f 72 65 02 2a 01 03 02 07 62 6c 6f 63 6b 65 64 01 02 02 02 03 66 6f 6f
}

func ExampleAppendVarint() {
	for _, v := range []uint64{239, 240, 404, 16380, 1<<64 - 1} {
		b := codec.AppendVarint(nil, v)
		back, n, _ := codec.ParseVarint(b)
		fmt.Printf("%d: % x (%d bytes, decodes to %d)\n", v, b, n, back)
	}
	_, _, err := codec.ParseVarint([]byte{0xf0, 0x80})
	fmt.Println(err)
	// Output:
	// 239: ef (1 bytes, decodes to 239)
	// 240: f0 00 (2 bytes, decodes to 240)
	// 404: f4 0a (2 bytes, decodes to 404)
	// 16380: fc f0 06 (3 bytes, decodes to 16380)
	// 18446744073709551615: ff f0 fe fe fe fe fe fe fe 0e (10 bytes, decodes to 18446744073709551615)
	// spop: invalid frame received: truncated input
}

// Read the headers of a request from HAProxy's req.hdrs_bin block (this one
// was captured from HAProxy 3.2): one lookup, a count, and every line.
func ExampleHeaders() {
	block, _ := hex.DecodeString("04686f73740c6578616d706c652e74657374" + // host: example.test
		"0f782d666f727761726465642d666f72093139322e302e322e31" + // x-forwarded-for: 192.0.2.1
		"06636f6f6b696503613d31" + // cookie: a=1
		"0f782d666f727761726465642d666f7219" + "3139382e35312e3130302e322c203230332e302e3131332e33" +
		"06636f6f6b696503623d32" + // cookie: b=2
		"0000") // the end marker
	h := codec.Headers(block)
	if err := h.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	host, _ := h.Get("Host") // case-insensitive, no copy
	fmt.Printf("host %s, %d cookies\n", host, h.Count("cookie"))
	it := h.Iter()
	for it.Next() {
		if it.NameIs("X-Forwarded-For") {
			fmt.Printf("%s: %s\n", it.Name(), it.Value())
		}
	}

	// A block cut short.
	err := codec.Headers(block[:20]).Validate()
	fmt.Println(errors.Is(err, codec.ErrBadHeaders), err)
	// Output:
	// host example.test, 2 cookies
	// x-forwarded-for: 192.0.2.1
	// x-forwarded-for: 198.51.100.2, 203.0.113.3
	// true spop: malformed header block at byte 18: a header name of 15 bytes runs past the end of the block (1 byte left)
}
