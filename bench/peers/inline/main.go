// Command inline is the floor the benchmark measures spoe-forge against: the
// simplest agent that can be fast, written here for the benchmark and not
// offered to users. One goroutine per connection reads a frame, runs the
// handler inline, and appends the ACK to a buffered writer that is flushed
// when the read buffer has nothing more: no stages, no pools, no deadlines,
// no back-pressure, no graceful drain. It uses pkg/codec for the wire
// format, so that what it measures is the engine's shape, not the codec.
package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"

	"github.com/spoe-forge/spoe-forge/bench/peers/internal/peer"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

func serve(nc net.Conn) {
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 64<<10)
	w := bufio.NewWriterSize(nc, 64<<10)
	var frame, ack []byte
	var note codec.Notify
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < codec.MinFrameLen || n > codec.DefaultMaxFrameSize {
			return
		}
		frame = append(frame[:0], make([]byte, n)...)[:n]
		if _, err := io.ReadFull(r, frame); err != nil {
			return
		}
		f, err := codec.ParseFrame(frame)
		if err != nil {
			return
		}
		switch f.Type {
		case codec.FrameHAProxyHello:
			var h codec.HAProxyHello
			if h.Decode(f.Payload) != nil {
				return
			}
			caps := h.Capabilities & codec.CapPipelining
			ack = codec.AppendAgentHello(ack[:0], min(h.MaxFrameSize, codec.DefaultMaxFrameSize), caps)
			if _, err := nc.Write(ack); err != nil || h.Healthcheck {
				return
			}
		case codec.FrameNotify:
			if note.Decode(f.Payload) != nil {
				return
			}
			var acts []byte
			if m, ok := note.Message("check-request"); ok {
				ip, _ := m.Arg("ip")
				path, _ := m.Arg("path")
				addr, _ := ip.Addr()
				p, _ := path.Bytes()
				acts, _ = codec.AppendSetVar(ack[:0], codec.ScopeTransaction, "score", codec.Int64(peer.Score(p)))
				acts, _ = codec.AppendSetVar(acts, codec.ScopeTransaction, "ok", codec.Bool(addr.Is4()))
			}
			ack = acts
			if _, err := w.Write(codec.AppendAck(nil, f.StreamID, f.FrameID, acts)); err != nil {
				return
			}
			if r.Buffered() == 0 && w.Flush() != nil {
				return
			}
		case codec.FrameHAProxyDisconnect:
			_, _ = nc.Write(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, codec.StatusNormal, "normal"))
			return
		}
	}
}

func main() {
	f := peer.Parse("inline")
	peer.Run(f, func() error {
		l, err := net.Listen("tcp", f.Addr)
		if err != nil {
			return err
		}
		for {
			nc, err := l.Accept()
			if err != nil {
				return err
			}
			go serve(nc)
		}
	})
}
