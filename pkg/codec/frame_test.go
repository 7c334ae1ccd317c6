package codec_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// prefix returns a 4-byte big-endian LENGTH.
func prefix(l uint32) []byte { return binary.BigEndian.AppendUint32(nil, l) }

func TestFrameLength(t *testing.T) {
	const limit = codec.DefaultMaxFrameSize
	// A header of 7 bytes (NOTIFY, FIN, ids 1/1) then filler up to LENGTH.
	body := func(l uint32) []byte {
		b := hx("03 00 00 00 01 01 01")
		for uint32(len(b)) < l {
			b = append(b, 0)
		}
		return b[:l]
	}
	cases := []struct {
		name   string
		length uint32
		limit  uint32
		err    error
		status codec.Status
	}{
		{"LENGTH 0", 0, limit, codec.ErrFrameTooSmall, codec.StatusInvalid},
		{"LENGTH 1", 1, limit, codec.ErrFrameTooSmall, codec.StatusInvalid},
		{"LENGTH 6", 6, limit, codec.ErrFrameTooSmall, codec.StatusInvalid},
		{"LENGTH 7, empty payload", 7, limit, nil, 0},
		{"LENGTH 8", 8, limit, nil, 0},
		{"LENGTH == limit", limit, limit, nil, 0},
		{"LENGTH == limit 256", 256, 256, nil, 0},
		{"LENGTH limit+1", limit + 1, limit, codec.ErrFrameTooBig, codec.StatusFrameTooBig},
		{"LENGTH 2^32-1 over the limit", math.MaxUint32, limit, codec.ErrFrameTooBig, codec.StatusFrameTooBig},
		{"LENGTH 7 with limit 6", 7, 6, codec.ErrFrameTooBig, codec.StatusFrameTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// ParseLength and NextFrame decide from the 4 prefix bytes
			// alone: no payload needs to be there.
			l, err := codec.ParseLength(prefix(tc.length), tc.limit)
			f, n, need, nerr := codec.NextFrame(prefix(tc.length), tc.limit)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				requireStatus(t, err, tc.status)
				require.Zero(t, l)
				require.ErrorIs(t, nerr, tc.err)
				requireStatus(t, nerr, tc.status)
				require.Nil(t, f)
				require.Zero(t, n)
				require.Zero(t, need)
				// DecodeFrame too, whatever follows.
				_, err = codec.DecodeFrame(cat(prefix(tc.length), body(min(tc.length, 64))), tc.limit)
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.length, l)
			require.NoError(t, nerr)
			require.Nil(t, f, "prefix only: frame incomplete")
			require.Zero(t, n)
			require.Equal(t, 4+int(tc.length), need)

			wire := cat(prefix(tc.length), body(tc.length))
			f, n, need, err = codec.NextFrame(wire, tc.limit)
			require.NoError(t, err)
			require.Equal(t, wire[4:], f)
			require.Equal(t, len(wire), n)
			require.Equal(t, len(wire), need)

			fr, err := codec.DecodeFrame(wire, tc.limit)
			require.NoError(t, err)
			require.Equal(t, codec.FrameNotify, fr.Type)
			require.Equal(t, uint64(1), fr.StreamID)
			require.Equal(t, uint64(1), fr.FrameID)
			require.Len(t, fr.Payload, int(tc.length)-7)
		})
	}
	for _, l := range []uint32{math.MaxUint32, math.MaxUint32 - 3, 1 << 31, 1<<31 - 5} {
		t.Run(fmt.Sprintf("LENGTH %d under MaxFrameLen", l), func(t *testing.T) {
			// Accepted as a length, and NextFrame reports how much it
			// needs without allocating it; on a 32-bit platform, where no
			// int can index it, it is too big.
			in := cat(prefix(l), hx("03 00 00 00 01 00 00"))
			f, n, need, err := codec.NextFrame(in, codec.MaxFrameLen)
			require.Nil(t, f)
			require.Zero(t, n)
			_, derr := codec.DecodeFrame(in, codec.MaxFrameLen)
			if uint64(l)+4 > uint64(math.MaxInt) {
				require.ErrorIs(t, err, codec.ErrFrameTooBig)
				require.Zero(t, need)
				require.ErrorIs(t, derr, codec.ErrFrameTooBig)
				return
			}
			require.NoError(t, err)
			require.Equal(t, uint64(4)+uint64(l), uint64(need))
			require.ErrorIs(t, derr, codec.ErrTruncated)
		})
	}
	t.Run("prefix shorter than 4 bytes", func(t *testing.T) {
		for i := range 4 {
			f, n, need, err := codec.NextFrame(make([]byte, i), codec.MaxFrameLen)
			require.NoError(t, err)
			require.Nil(t, f)
			require.Zero(t, n)
			require.Zero(t, need)
			_, err = codec.DecodeFrame(make([]byte, i), codec.MaxFrameLen)
			require.ErrorIs(t, err, codec.ErrTruncated)
		}
	})
}

func TestParseFrame(t *testing.T) {
	cases := []struct {
		name    string
		frame   string // without the length prefix
		want    codec.Header
		payload string
		err     error
	}{
		{"smallest ACK", "67 00 00 00 01 00 00", codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin}, "", nil},
		{"empty NOTIFY of 3.2.0", "03 00 00 00 01 01 01", codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1}, "", nil},
		{"stream-id 0 (2.6)", "03 00 00 00 01 00 02 aa", codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, FrameID: 2}, "aa", nil},
		{"5-byte and 10-byte ids", "03 00 00 00 01 ff f0 fe fe 7e ff f0 fe fe fe fe fe fe fe 0e bb",
			codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: math.MaxUint32, FrameID: math.MaxUint64}, "bb", nil},
		{"reserved flag bits ignored", "67 00 00 01 01 02 01", codec.Header{Type: codec.FrameAck, Flags: 0x101, StreamID: 2, FrameID: 1}, "", nil},
		{"all reserved bits, no FIN", "03 ff ff ff fc 00 00", codec.Header{Type: codec.FrameNotify, Flags: 0xfffffffc}, "", nil},
		{"FIN|ABORT", "00 00 00 00 03 04 02", codec.Header{Type: codec.FrameUnset, Flags: codec.FlagFin | codec.FlagAbort, StreamID: 4, FrameID: 2}, "", nil},
		{"unknown type 99", "63 00 00 00 01 00 00 01", codec.Header{Type: 99, Flags: codec.FlagFin}, "01", nil},
		{"6 bytes", "03 00 00 00 01 00", codec.Header{}, "", codec.ErrFrameTooSmall},
		{"empty", "", codec.Header{}, "", codec.ErrFrameTooSmall},
		{"stream-id cut", "03 00 00 00 01 f0 80", codec.Header{}, "", codec.ErrTruncated},
		{"frame-id missing", "03 00 00 00 01 f0 00", codec.Header{}, "", codec.ErrTruncated},
		{"frame-id cut", "03 00 00 00 01 00 ff ff", codec.Header{}, "", codec.ErrTruncated},
		{"stream-id overflows", "03 00 00 00 01 ff f0 fe fe fe fe fe fe fe 0f 00", codec.Header{}, "", codec.ErrVarintOverflow},
		{"frame-id overflows", "03 00 00 00 01 00 ff f0 fe fe fe fe fe fe fe 0f", codec.Header{}, "", codec.ErrVarintOverflow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := codec.ParseFrame(hx(tc.frame))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				requireCodecError(t, err)
				require.Equal(t, codec.Frame{}, f)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, f.Header)
			require.Equal(t, string(hx(tc.payload)), string(f.Payload))
			require.Equal(t, tc.want.Flags&codec.FlagFin != 0, f.Flags.Fin())
			require.Equal(t, tc.want.Flags&codec.FlagAbort != 0, f.Flags.Abort())

			// Through DecodeFrame with the prefix, and back.
			wire := cat(prefix(uint32(len(hx(tc.frame)))), hx(tc.frame))
			df, err := codec.DecodeFrame(wire, codec.MaxFrameLen)
			require.NoError(t, err)
			require.Equal(t, f, df)
			require.Equal(t, wire, codec.AppendFrame(nil, f.Header, f.Payload))
		})
	}
}

func TestFlags(t *testing.T) {
	cases := []struct {
		name       string
		f          codec.Flags
		fin, abort bool
	}{
		{"none", 0, false, false},
		{"FIN", codec.FlagFin, true, false},
		{"ABORT", codec.FlagAbort, false, true},
		{"FIN|ABORT", codec.FlagFin | codec.FlagAbort, true, true},
		{"FIN and reserved 0x100", 0x101, true, false},
		{"reserved only", 0xfffffffc, false, false},
		{"all", 0xffffffff, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.fin, tc.f.Fin())
			require.Equal(t, tc.abort, tc.f.Abort())
		})
	}
}

// splitFrames are frames used to check reassembly from a stream cut at every
// byte: a real NOTIFY, a smallest frame, and one with long ids.
func splitFrames(t *testing.T) [][]byte {
	return [][]byte{
		loadVector(t, "2.6/notify-all-types-get.hex"),
		hx("00 00 00 07 67 00 00 00 01 00 00"),
		frameBytes(codec.FrameNotify, codec.FlagFin, math.MaxUint64, 1<<40, hx(`0d "check-request" 00`)),
		loadVector(t, "3.2/haproxy-hello-healthcheck.hex"),
	}
}

// TestFrameSplitEverywhere feeds each frame cut at every position: before
// the cut NextFrame asks for more (nil frame), after it the frame comes out
// whole. DecodeFrame of every strict prefix is an error, never a value.
func TestFrameSplitEverywhere(t *testing.T) {
	for i, wire := range splitFrames(t) {
		t.Run(fmt.Sprintf("frame %d (%d bytes)", i, len(wire)), func(t *testing.T) {
			want, err := codec.DecodeFrame(wire, codec.MaxFrameLen)
			require.NoError(t, err)
			for cut := range len(wire) {
				f, n, need, err := codec.NextFrame(wire[:cut], codec.MaxFrameLen)
				require.NoError(t, err, "cut at %d", cut)
				require.Nil(t, f, "cut at %d", cut)
				require.Zero(t, n)
				if cut < 4 {
					require.Zero(t, need, "prefix incomplete")
				} else {
					require.Equal(t, len(wire), need)
				}
				_, err = codec.DecodeFrame(wire[:cut], codec.MaxFrameLen)
				require.ErrorIs(t, err, codec.ErrTruncated, "DecodeFrame of a %d-byte prefix", cut)

				// A reader that got the first cut bytes, then the rest.
				var buf []byte
				buf = append(buf, wire[:cut]...)
				f, _, _, err = codec.NextFrame(buf, codec.MaxFrameLen)
				require.NoError(t, err)
				require.Nil(t, f)
				buf = append(buf, wire[cut:]...)
				f, n, _, err = codec.NextFrame(buf, codec.MaxFrameLen)
				require.NoError(t, err)
				require.Equal(t, len(wire), n)
				got, err := codec.ParseFrame(f)
				require.NoError(t, err)
				require.Equal(t, want, got)
			}
		})
	}
}

// TestFrameStream reads every captured frame from one buffer (several frames
// in one read), and from the same stream delivered in chunks of every size
// from 1 to 64 bytes.
func TestFrameStream(t *testing.T) {
	m := loadManifest(t)
	var stream []byte
	var want []codec.Frame
	for _, v := range m.Vectors {
		b := loadVector(t, v.File)
		f, err := codec.DecodeFrame(b, codec.MaxFrameLen)
		require.NoError(t, err)
		want = append(want, f)
		stream = append(stream, b...)
	}
	// Also a few synthetic frames, back to back.
	for _, b := range splitFrames(t) {
		f, err := codec.DecodeFrame(b, codec.MaxFrameLen)
		require.NoError(t, err)
		want = append(want, f)
		stream = append(stream, b...)
	}

	t.Run("one buffer", func(t *testing.T) {
		var got []codec.Frame
		rest := stream
		for len(rest) > 0 {
			fb, n, _, err := codec.NextFrame(rest, codec.MaxFrameLen)
			require.NoError(t, err)
			require.NotNil(t, fb)
			f, err := codec.ParseFrame(fb)
			require.NoError(t, err)
			got = append(got, f)
			rest = rest[n:]
		}
		require.Equal(t, want, got)
	})
	for _, chunk := range []int{1, 2, 3, 7, 11, 64, 4096} {
		t.Run(fmt.Sprintf("chunks of %d", chunk), func(t *testing.T) {
			var buf []byte
			var got []codec.Frame
			for off := 0; off < len(stream); off += chunk {
				buf = append(buf, stream[off:min(off+chunk, len(stream))]...)
				for {
					fb, n, _, err := codec.NextFrame(buf, codec.MaxFrameLen)
					require.NoError(t, err)
					if fb == nil {
						break
					}
					f, err := codec.ParseFrame(fb)
					require.NoError(t, err)
					// Copy the payload: buf is compacted below.
					f.Payload = append([]byte(nil), f.Payload...)
					got = append(got, f)
					buf = append(buf[:0], buf[n:]...)
				}
			}
			require.Empty(t, buf)
			require.Len(t, got, len(want))
			for i := range want {
				require.Equal(t, want[i].Header, got[i].Header)
				require.Equal(t, string(want[i].Payload), string(got[i].Payload))
			}
		})
	}
}

func TestDecodeFrame(t *testing.T) {
	ack := hx("00 00 00 07 67 00 00 00 01 00 00")
	t.Run("trailing data", func(t *testing.T) {
		_, err := codec.DecodeFrame(cat(ack, hx("00")), codec.MaxFrameLen)
		require.ErrorIs(t, err, codec.ErrTrailingData)
		requireStatus(t, err, codec.StatusInvalid)
		_, err = codec.DecodeFrame(cat(ack, ack), codec.MaxFrameLen)
		require.ErrorIs(t, err, codec.ErrTrailingData)
	})
	t.Run("over the limit", func(t *testing.T) {
		_, err := codec.DecodeFrame(ack, 6)
		require.ErrorIs(t, err, codec.ErrFrameTooBig)
		requireStatus(t, err, codec.StatusFrameTooBig)
	})
	t.Run("exact", func(t *testing.T) {
		f, err := codec.DecodeFrame(ack, 7)
		require.NoError(t, err)
		require.Equal(t, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin}, f.Header)
		require.Empty(t, f.Payload)
	})
	t.Run("LENGTH says 7, header needs more", func(t *testing.T) {
		_, err := codec.DecodeFrame(hx("00 00 00 07 03 00 00 00 01 f0 00"), codec.MaxFrameLen)
		require.ErrorIs(t, err, codec.ErrTruncated)
	})
}

func TestFrameEncoders(t *testing.T) {
	t.Run("AppendHeader", func(t *testing.T) {
		h := codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: 404, FrameID: 1}
		require.Equal(t, hx("67 00 00 00 01 f4 0a 01"), codec.AppendHeader(nil, h))
	})
	t.Run("AppendFrame", func(t *testing.T) {
		got := codec.AppendFrame([]byte("x"), codec.Header{Type: codec.FrameNotify, Flags: codec.FlagFin, StreamID: 1, FrameID: 1}, nil)
		require.Equal(t, cat([]byte("x"), hx("00 00 00 07 03 00 00 00 01 01 01")), got)
	})
	t.Run("BeginFrame FinishFrame", func(t *testing.T) {
		dst, start := codec.BeginFrame([]byte("abc"), codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: 2, FrameID: 1})
		require.Equal(t, 3, start)
		dst = append(dst, 0xaa, 0xbb)
		l, err := codec.FinishFrame(dst, start, 9)
		require.NoError(t, err)
		require.Equal(t, uint32(9), l)
		require.Equal(t, cat([]byte("abc"), hx("00 00 00 09 67 00 00 00 01 02 01 aa bb")), dst)
	})
	t.Run("FinishFrame over the limit", func(t *testing.T) {
		dst, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: 2, FrameID: 1})
		dst = append(dst, 0xaa, 0xbb)
		before := append([]byte(nil), dst...)
		l, err := codec.FinishFrame(dst, start, 8)
		require.ErrorIs(t, err, codec.ErrFrameTooBig)
		requireStatus(t, err, codec.StatusFrameTooBig)
		require.Zero(t, l)
		require.Equal(t, before, dst, "dst unchanged")
	})
	t.Run("FinishFrame with a 16 KiB payload", func(t *testing.T) {
		dst, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: 1, FrameID: 1})
		dst = append(dst, make([]byte, codec.DefaultMaxFrameSize-7)...)
		l, err := codec.FinishFrame(dst, start, codec.DefaultMaxFrameSize)
		require.NoError(t, err)
		require.Equal(t, uint32(codec.DefaultMaxFrameSize), l)
		_, err = codec.FinishFrame(dst, start, codec.DefaultMaxFrameSize-1)
		require.ErrorIs(t, err, codec.ErrFrameTooBig)
	})
}
