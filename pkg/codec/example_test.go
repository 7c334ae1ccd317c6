package codec_test

import (
	"encoding/hex"
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
