package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// Message profiles: what one NOTIFY carries. Every profile is one
// "check-request" message whose first two arguments are ip and path, the
// two the benchmark handlers read.
const (
	// profileCheck is the check-request shape: ip (IPV4), path (~30 B),
	// ua (~100 B), host and port (INT64) — the shape of HAProxy's §11 example
	// without the body.
	profileCheck = "check-request"
	// profileBody4K adds a 4 KiB BINARY body.
	profileBody4K = "body4k"
	// profileLarge adds a BINARY body of -large-size bytes, larger than a
	// frame: it needs the fragmentation capability and is then sent as a
	// NOTIFY without FIN followed by UNSET continuation frames, as HAProxy
	// 2.6/3.0 do.
	profileLarge = "large"
)

var profiles = []string{profileCheck, profileBody4K, profileLarge}

const (
	benchPath = "/api/v1/users/12345/orders/678" // 30 bytes
	benchUA   = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	benchHost = "www.example.com"
)

var benchIP = netip.MustParseAddr("192.0.2.10")

// messagePayload returns the NOTIFY payload (the list of messages) of a
// profile; largeSize is the body size of profileLarge.
func messagePayload(profile string, largeSize int) ([]byte, error) {
	args := []codec.Arg{
		{Name: []byte("ip"), Value: codec.Addr(benchIP)},
		{Name: []byte("path"), Value: codec.String(benchPath)},
		{Name: []byte("ua"), Value: codec.String(benchUA)},
		{Name: []byte("host"), Value: codec.String(benchHost)},
		{Name: []byte("port"), Value: codec.Int64(8080)},
	}
	switch profile {
	case profileCheck:
	case profileBody4K:
		args = append(args, codec.Arg{Name: []byte("body"), Value: codec.Binary(body(4096))})
	case profileLarge:
		if largeSize <= 0 {
			return nil, fmt.Errorf("-large-size must be positive")
		}
		args = append(args, codec.Arg{Name: []byte("body"), Value: codec.Binary(body(largeSize))})
	default:
		return nil, fmt.Errorf("unknown -profile %q (want one of %s)", profile, strings.Join(profiles, ", "))
	}
	return codec.AppendMessage(nil, "check-request", args...)
}

func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// fragHeaderRoom is what HAProxy 2.6/3.0 keep free in each frame for the
// header (FRAME_HDR_SIZE): messages are encoded into at most
// max-frame-size - 32 bytes per frame (spop.md §2.2, §8.4).
const fragHeaderRoom = 32

// notifyPlan says how one NOTIFY of a payload goes on the wire for a
// negotiated max-frame-size: as one frame, or as chunks of at most
// mfs-32 bytes (first a NOTIFY without FIN, then UNSET frames, the last with
// FIN) when fragmentation was negotiated.
type notifyPlan struct {
	payload []byte
	chunk   int // bytes of payload per frame
	frames  int // frames per NOTIFY
}

func planNotify(payload []byte, mfs uint32, fragmentation bool) (notifyPlan, error) {
	room := int(mfs) - fragHeaderRoom
	if room <= 0 {
		return notifyPlan{}, fmt.Errorf("max-frame-size %d leaves no room for messages", mfs)
	}
	if len(payload) <= room {
		return notifyPlan{payload: payload, chunk: room, frames: 1}, nil
	}
	if !fragmentation {
		return notifyPlan{}, fmt.Errorf("a NOTIFY of %d bytes exceeds max-frame-size-32 = %d and fragmentation was not negotiated (HAProxy would fail the event)", len(payload), room)
	}
	return notifyPlan{payload: payload, chunk: room, frames: (len(payload) + room - 1) / room}, nil
}

// wireLen is the bytes one NOTIFY takes on the wire with ids of the given
// lengths, length prefixes included.
func (p notifyPlan) wireLen(sid, fid uint64) int {
	hdr := codec.LengthPrefixLen + 5 + codec.VarintLen(sid) + codec.VarintLen(fid)
	return p.frames*hdr + len(p.payload)
}

// appendNotify appends the frames of one NOTIFY with the given ids.
func (p notifyPlan) appendNotify(dst []byte, sid, fid uint64) []byte {
	if p.frames == 1 {
		return codec.AppendFrame(dst, codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: sid, FrameID: fid}, p.payload)
	}
	rest := p.payload
	typ := codec.FrameNotify
	for len(rest) > 0 {
		n := min(p.chunk, len(rest))
		var flags codec.Flags
		if n == len(rest) {
			flags = codec.FlagFin
		}
		dst = codec.AppendFrame(dst, codec.Header{Type: typ, Flags: flags, StreamID: sid, FrameID: fid}, rest[:n])
		rest = rest[n:]
		typ = codec.FrameUnset
	}
	return dst
}
