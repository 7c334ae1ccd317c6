package codec_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// The fuzz targets check, for every decoder: no panic; every error is a
// *codec.Error; and decode -> encode (with the package's own encoders) ->
// decode gives the same decoded form, whose encoding is then byte for byte
// the same. Seeds are the frames captured from HAProxy (whole frames for
// FuzzFrame, payloads for the payload decoders) plus small hand seeds.
// Crashers found while fuzzing stay in testdata/fuzz/ as regression seeds.

// maxSeedLen bounds the captured frames used as seeds. The 9 larger ones
// only carry 12000- to 60000-byte bodies (fully checked by TestVectors): as
// seeds they give the fuzzer nothing new, and every interesting input
// mutated from them takes the minimizer up to its full minute, during which
// nothing else is fuzzed.
const maxSeedLen = 4096

// vectorSeeds returns the captured frames of at most maxSeedLen bytes (99 of
// the 108) and their payloads.
func vectorSeeds(f *testing.F) (frames, payloads [][]byte) {
	m := loadManifest(f)
	for _, v := range m.Vectors {
		b := loadVector(f, v.File)
		if len(b) > maxSeedLen {
			continue
		}
		fr, err := codec.DecodeFrame(b, codec.MaxFrameLen)
		if err != nil {
			f.Fatalf("%s: %v", v.File, err)
		}
		frames = append(frames, b)
		payloads = append(payloads, fr.Payload)
	}
	return frames, payloads
}

// addPayloadSeeds adds the vectors' payloads and hand seeds to a payload
// fuzz target.
func addPayloadSeeds(f *testing.F, hand ...string) {
	_, payloads := vectorSeeds(f)
	for _, p := range payloads {
		f.Add(p)
	}
	for _, h := range hand {
		f.Add(hx(h))
	}
}

// mustCodecError fails unless err is a *codec.Error.
func mustCodecError(t *testing.T, err error) {
	t.Helper()
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *codec.Error", err, err)
	}
}

func FuzzVarint(f *testing.F) {
	for _, tc := range varintCases {
		f.Add(hx(tc.enc))
	}
	for _, s := range []string{"", "f0", "f0 80", "ff f0 fe fe fe fe fe fe fe 0f", "f0 80 80 80 80 80 80 80 80 80 00", "ff ff ff ff ff ff ff ff ff ff ff"} {
		f.Add(hx(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := codec.ParseVarint(b)
		want, wn, ok := refVarint(b)
		if err != nil {
			mustCodecError(t, err)
			if ok {
				t.Fatalf("ParseVarint(% x): %v; reference %d (%d bytes)", b, err, want, wn)
			}
			if v != 0 || n != 0 {
				t.Fatalf("ParseVarint(% x) failed with %d, %d", b, v, n)
			}
			return
		}
		if !ok || v != want || n != wn {
			t.Fatalf("ParseVarint(% x) = %d, %d; reference %d, %d, %v", b, v, n, want, wn, ok)
		}
		// The encoding is canonical: re-encoding gives the same bytes.
		enc := codec.AppendVarint(nil, v)
		if !bytes.Equal(enc, b[:n]) || codec.VarintLen(v) != n {
			t.Fatalf("AppendVarint(%d) = % x (VarintLen %d), decoded from % x", v, enc, codec.VarintLen(v), b[:n])
		}
		// And so is ParseBytes on it as a length.
		if s, m, err := codec.ParseBytes(b); err == nil {
			if uint64(len(s)) != v || m != n+len(s) {
				t.Fatalf("ParseBytes(% x) = %d bytes, %d", b, len(s), m)
			}
		} else {
			mustCodecError(t, err)
			if uint64(len(b)-n) >= v {
				t.Fatalf("ParseBytes(% x): %v, but %d bytes follow a length of %d", b, err, len(b)-n, v)
			}
		}
	})
}

func FuzzFrame(f *testing.F) {
	frames, _ := vectorSeeds(f)
	for i, fr := range frames {
		f.Add(fr, uint32(codec.DefaultMaxFrameSize), uint16(i*7))
	}
	f.Add(hx("00 00 00 07 67 00 00 00 01 00 00"), uint32(7), uint16(3))
	f.Add(hx("00 00 00 07 67 00 00 00 01 00 00 00 00 00 07 03 00 00 00 01 01 01"), uint32(256), uint16(13))
	f.Add(hx("00 00 00 06 67 00 00 00 01 00"), uint32(256), uint16(0))
	f.Add(hx("ff ff ff ff 03"), uint32(codec.MaxFrameLen), uint16(2))
	f.Add(hx("00 00 00 0a 03 00 00 00 01 ff f0 fe fe 7e"), uint32(256), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, limit uint32, split uint16) {
		for _, lim := range []uint32{limit, codec.MaxFrameLen} {
			frame, n, need, err := codec.NextFrame(data, lim)
			_, derr := codec.DecodeFrame(data, lim)
			if err != nil {
				mustCodecError(t, err)
				if !errors.Is(err, codec.ErrFrameTooSmall) && !errors.Is(err, codec.ErrFrameTooBig) {
					t.Fatalf("NextFrame: unexpected %v", err)
				}
				if frame != nil || n != 0 || need != 0 || !errors.Is(derr, err) {
					t.Fatalf("NextFrame failed with frame %d, %d, %d; DecodeFrame %v", len(frame), n, need, derr)
				}
				continue
			}
			if frame == nil {
				if n != 0 || (len(data) < 4) != (need == 0) || (need != 0 && need <= len(data)) {
					t.Fatalf("incomplete frame: n %d need %d len %d", n, need, len(data))
				}
				if !errors.Is(derr, codec.ErrTruncated) {
					t.Fatalf("DecodeFrame of an incomplete frame: %v", derr)
				}
				continue
			}
			if n != need || n > len(data) || n < 4+codec.MinFrameLen || uint64(n) > 4+uint64(lim) || !bytes.Equal(frame, data[4:n]) {
				t.Fatalf("NextFrame: %d bytes of %d, need %d", n, len(data), need)
			}
			// Any strict prefix is incomplete, never a frame or an error.
			s := int(split) % n
			if pf, pn, _, perr := codec.NextFrame(data[:s], lim); pf != nil || pn != 0 || perr != nil {
				t.Fatalf("prefix of %d bytes: frame %v, %d, %v", s, pf != nil, pn, perr)
			}
			if _, perr := codec.DecodeFrame(data[:s], lim); !errors.Is(perr, codec.ErrTruncated) {
				t.Fatalf("DecodeFrame of a %d-byte prefix: %v", s, perr)
			}

			fr, err := codec.ParseFrame(frame)
			whole, werr := codec.DecodeFrame(data[:n], lim)
			if n < len(data) && !errors.Is(derr, codec.ErrTrailingData) {
				t.Fatalf("DecodeFrame with trailing bytes: %v", derr)
			}
			if err != nil {
				mustCodecError(t, err)
				if !errors.Is(werr, err) {
					t.Fatalf("ParseFrame: %v, DecodeFrame: %v", err, werr)
				}
				continue
			}
			if werr != nil || whole.Header != fr.Header || !bytes.Equal(whole.Payload, fr.Payload) {
				t.Fatalf("ParseFrame and DecodeFrame disagree: %v", werr)
			}
			// Re-encoding gives the same bytes, and decoding them the same
			// frame.
			re := codec.AppendFrame(nil, fr.Header, fr.Payload)
			if !bytes.Equal(re, data[:n]) {
				t.Fatalf("re-encoded frame differs:\n% x\n% x", re, data[:n])
			}
			again, err := codec.DecodeFrame(re, lim)
			if err != nil || again.Header != fr.Header || !bytes.Equal(again.Payload, fr.Payload) {
				t.Fatalf("decode(encode(frame)): %v", err)
			}
			// BeginFrame/FinishFrame build the same bytes.
			bf, start := codec.BeginFrame(nil, fr.Header)
			bf = append(bf, fr.Payload...)
			if l, err := codec.FinishFrame(bf, start, lim); err != nil || int(l) != n-4 || !bytes.Equal(bf, re) {
				t.Fatalf("BeginFrame/FinishFrame: %d, %v", l, err)
			}
		}
	})
}

func FuzzValue(f *testing.F) {
	for _, ty := range everyType {
		f.Add(codec.AppendValue(nil, ty.v))
	}
	for _, s := range []string{"", "31", "21", "f1", `18 02 "ab"`, "0a", "1f", "04 f0", "06 7f 00", "07 00", "09 ff f0 fe fe fe fe fe fe fe 0e", "04 ff f0 fe fe fe fe fe fe fe 0f"} {
		f.Add(hx(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := codec.ParseValue(b)
		if err != nil {
			mustCodecError(t, err)
			if n != 0 || !v.IsNull() {
				t.Fatalf("ParseValue failed with %d, %v", n, v.Type())
			}
			return
		}
		if n < 1 || n > len(b) {
			t.Fatalf("ParseValue used %d of %d bytes", n, len(b))
		}
		checkValueAccessors(t, v)
		enc := codec.AppendValue(nil, v)
		if len(enc) != codec.ValueLen(v) || len(enc) != n {
			t.Fatalf("AppendValue: %d bytes, ValueLen %d, decoded from %d", len(enc), codec.ValueLen(v), n)
		}
		v2, n2, err := codec.ParseValue(enc)
		if err != nil || n2 != len(enc) || v2.Type() != v.Type() || !v2.Equal(v) {
			t.Fatalf("decode(encode(v)): %v, %d, %v", err, n2, v2.Type())
		}
		if enc2 := codec.AppendValue(nil, v2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding unstable:\n% x\n% x", enc, enc2)
		}
		// Only the flag nibble may differ from the input.
		if enc[0]&0x0f != b[0]&0x0f && !(b[0]&0x0f == byte(codec.TypeString) && v.Type() == codec.TypeBinary) {
			t.Fatalf("type byte %02x re-encoded as %02x", b[0], enc[0])
		}
		if !bytes.Equal(enc[1:], b[1:n]) {
			t.Fatalf("data re-encoded differently")
		}
	})
}

// checkValueAccessors calls every accessor: none may panic, and ok must be
// true exactly for the matching types.
func checkValueAccessors(t *testing.T, v codec.Value) {
	ty := v.Type()
	if _, ok := v.Bool(); ok != (ty == codec.TypeBool) {
		t.Fatalf("Bool ok=%v for %v", ok, ty)
	}
	if _, ok := v.Int(); ok != ty.IsInt() {
		t.Fatalf("Int ok=%v for %v", ok, ty)
	}
	if _, ok := v.Uint(); ok != ty.IsInt() {
		t.Fatalf("Uint ok=%v for %v", ok, ty)
	}
	if a, ok := v.Addr(); ok != (ty == codec.TypeIPv4 || ty == codec.TypeIPv6) || ok != a.IsValid() {
		t.Fatalf("Addr ok=%v for %v", ok, ty)
	}
	b, ok := v.Bytes()
	s, ok2 := v.String()
	if ok != (ty == codec.TypeString || ty == codec.TypeBinary) || ok != ok2 || string(b) != s {
		t.Fatalf("Bytes/String ok=%v/%v for %v", ok, ok2, ty)
	}
	_ = ty.String()
}

func FuzzKVList(f *testing.F) {
	addPayloadSeeds(f, `01 "k" 00`, `01 "k" 0a`, `01 "k" 08 05 "ab"`, `f0`, `03 "key"`)
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := codec.ParseKVList(nil, b)
		if err != nil {
			mustCodecError(t, err)
			return
		}
		var enc []byte
		for _, kv := range kvs {
			checkValueAccessors(t, kv.Value)
			enc = codec.AppendValue(codec.AppendBytes(enc, kv.Name), kv.Value)
		}
		kvs2, err := codec.ParseKVList(nil, enc)
		if err != nil || len(kvs2) != len(kvs) {
			t.Fatalf("decode(encode(list)): %v, %d items of %d", err, len(kvs2), len(kvs))
		}
		var enc2 []byte
		for i := range kvs {
			if !bytes.Equal(kvs[i].Name, kvs2[i].Name) || kvs[i].Value.Type() != kvs2[i].Value.Type() || !kvs[i].Value.Equal(kvs2[i].Value) {
				t.Fatalf("item %d changed", i)
			}
			// AppendKV (string names) builds the same bytes.
			enc2 = codec.AppendKV(enc2, string(kvs2[i].Name), kvs2[i].Value)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding unstable")
		}
		if len(enc) != len(b) {
			// Only flag nibbles may change; lengths never do.
			t.Fatalf("re-encoded list has %d bytes, input %d", len(enc), len(b))
		}
	})
}

// normHAProxyHello is what AppendHAProxyHello makes of a decoded HELLO: it
// always writes supported-versions ("2.0" when missing), max-frame-size and
// capabilities (spelled from the set when the raw value is missing), and
// healthcheck only when true.
func normHAProxyHello(h codec.HAProxyHello) codec.HAProxyHello {
	if h.SupportedVersions == nil {
		h.SupportedVersions = []byte("2.0")
	}
	h.HasMaxFrameSize = true
	if h.RawCapabilities == nil {
		h.RawCapabilities = []byte(h.Capabilities.String())
	}
	return h
}

func equalHAProxyHello(a, b codec.HAProxyHello) bool {
	return bytes.Equal(a.SupportedVersions, b.SupportedVersions) && (a.SupportedVersions == nil) == (b.SupportedVersions == nil) &&
		a.MaxFrameSize == b.MaxFrameSize && a.HasMaxFrameSize == b.HasMaxFrameSize &&
		a.Capabilities == b.Capabilities &&
		bytes.Equal(a.RawCapabilities, b.RawCapabilities) && (a.RawCapabilities == nil) == (b.RawCapabilities == nil) &&
		bytes.Equal(a.EngineID, b.EngineID) && (a.EngineID == nil) == (b.EngineID == nil) &&
		a.Healthcheck == b.Healthcheck
}

// payloadOf decodes a frame built by an encoder and returns its payload.
func payloadOf(t *testing.T, frame []byte, typ codec.FrameType) []byte {
	t.Helper()
	f, err := codec.DecodeFrame(frame, codec.MaxFrameLen)
	if err != nil || f.Type != typ || f.Flags != codec.FlagFin || f.StreamID != 0 || f.FrameID != 0 {
		t.Fatalf("encoder built a bad frame: %v, %+v", err, f.Header)
	}
	return f.Payload
}

func FuzzHAProxyHello(f *testing.F) {
	addPayloadSeeds(f,
		`12 "supported-versions" 08 03 "2.0" 0e "max-frame-size" 03 fc f0 06 0c "capabilities" 08 00 0b "healthcheck" 11`,
		`0e "max-frame-size" 08 00`,
		`0b "healthcheck" 04 01`,
		`0c "capabilities" 08 0b "pipelining2"`,
		`09 "engine-id" 18 00`,
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h codec.HAProxyHello
		if err := h.Decode(b); err != nil {
			mustCodecError(t, err)
			return
		}
		if err := h.Validate(); err != nil {
			mustCodecError(t, err)
		}
		if h.Capabilities != codec.ParseCapabilities(h.RawCapabilities) {
			t.Fatalf("Capabilities %v do not match %q", h.Capabilities, h.RawCapabilities)
		}
		enc := codec.AppendHAProxyHello(nil, &h)
		var h2 codec.HAProxyHello
		if err := h2.Decode(payloadOf(t, enc, codec.FrameHAProxyHello)); err != nil {
			t.Fatalf("decode(encode(hello)): %v", err)
		}
		if want := normHAProxyHello(h); !equalHAProxyHello(want, h2) {
			t.Fatalf("decode(encode(hello)) = %+v, want %+v", h2, want)
		}
		if enc2 := codec.AppendHAProxyHello(nil, &h2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding unstable")
		}
	})
}

func FuzzAgentHello(f *testing.F) {
	addPayloadSeeds(f,
		`07 "version" 08 03 "2.0" 0e "max-frame-size" 03 fc f0 06 0c "capabilities" 08 00`,
		`07 "version" 08 04 "2.00"`,
		`0e "max-frame-size" 05 ff f0 fe fe fe fe fe fe fe 0e`,
		`0c "capabilities" 18 05 "async"`,
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h codec.AgentHello
		if err := h.Decode(b); err != nil {
			mustCodecError(t, err)
			return
		}
		for _, offer := range []uint32{0, codec.MinMaxFrameSize, codec.DefaultMaxFrameSize, codec.MaxFrameLen} {
			if err := h.Validate(offer); err != nil {
				mustCodecError(t, err)
			}
		}
		// Generic encoding of what was decoded.
		encode := func(h *codec.AgentHello) []byte {
			dst, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameAgentHello, Flags: codec.FlagFin})
			if h.Version != nil {
				dst = codec.AppendKV(dst, "version", codec.StringBytes(h.Version))
			}
			if h.HasMaxFrameSize {
				dst = codec.AppendKV(dst, "max-frame-size", codec.Uint32(h.MaxFrameSize))
			}
			if h.HasCapabilities {
				dst = codec.AppendKV(dst, "capabilities", codec.String(h.Capabilities.String()))
			}
			if _, err := codec.FinishFrame(dst, start, codec.MaxFrameLen); err != nil {
				t.Fatal(err)
			}
			return dst
		}
		enc := encode(&h)
		var h2 codec.AgentHello
		if err := h2.Decode(payloadOf(t, enc, codec.FrameAgentHello)); err != nil {
			t.Fatalf("decode(encode(hello)): %v", err)
		}
		if !bytes.Equal(h.Version, h2.Version) || (h.Version == nil) != (h2.Version == nil) ||
			h.MaxFrameSize != h2.MaxFrameSize || h.HasMaxFrameSize != h2.HasMaxFrameSize ||
			h.Capabilities != h2.Capabilities || h.HasCapabilities != h2.HasCapabilities {
			t.Fatalf("decode(encode(hello)) = %+v, want %+v", h2, h)
		}
		if enc2 := encode(&h2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding unstable")
		}
		// AppendAgentHello writes the same bytes for a "2.0" hello with all
		// three items.
		if string(h.Version) == "2.0" && h.HasMaxFrameSize && h.HasCapabilities {
			if ah := codec.AppendAgentHello(nil, h.MaxFrameSize, h.Capabilities); !bytes.Equal(ah, enc) {
				t.Fatalf("AppendAgentHello differs from the generic encoding")
			}
		}
	})
}

func FuzzDisconnect(f *testing.F) {
	addPayloadSeeds(f,
		`0b "status-code" 03 00 07 "message" 08 06 "normal"`,
		`0b "status-code" 05 ff f0 fe fe fe fe fe fe fe 0e`,
		`07 "message" 09 00`,
		`0b "status-code" 08 00`,
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		var d codec.Disconnect
		if err := d.Decode(b); err != nil {
			mustCodecError(t, err)
			return
		}
		_ = d.Status.String()
		// AppendDisconnect always writes both items and cuts the message.
		want := d
		want.HasStatus = true
		if want.Message == nil {
			want.Message = []byte{}
		}
		if len(want.Message) > codec.MaxDisconnectMessageLen {
			want.Message = want.Message[:codec.MaxDisconnectMessageLen]
		}
		for _, ft := range []codec.FrameType{codec.FrameAgentDisconnect, codec.FrameHAProxyDisconnect} {
			enc := codec.AppendDisconnect(nil, ft, d.Status, string(d.Message))
			var d2 codec.Disconnect
			if err := d2.Decode(payloadOf(t, enc, ft)); err != nil {
				t.Fatalf("decode(encode(disconnect)): %v", err)
			}
			if d2.Status != want.Status || !d2.HasStatus || !bytes.Equal(d2.Message, want.Message) || d2.Message == nil {
				t.Fatalf("decode(encode(disconnect)) = %+v, want %+v", d2, want)
			}
			if enc2 := codec.AppendDisconnect(nil, ft, d2.Status, string(d2.Message)); !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding unstable")
			}
		}
	})
}

func FuzzNotify(f *testing.F) {
	addPayloadSeeds(f, checkRequest, `06 "noargs" 00`, `03 "msg" ff 00 00`, `03 "msg" 01 01 "a" 18 01 "x"`, `03 "msg" 01 01 "a" 0c`, `00 00 00 00`)
	var n, n2 codec.Notify // reused, as an agent does
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := n.Decode(b); err != nil {
			mustCodecError(t, err)
			if len(n.Messages) != 0 {
				t.Fatalf("%d messages left after an error", len(n.Messages))
			}
			return
		}
		var enc []byte
		for i := range n.Messages {
			m := &n.Messages[i]
			if len(m.Args) > 255 {
				t.Fatalf("%d args", len(m.Args))
			}
			for j, a := range m.Args {
				checkValueAccessors(t, a.Value)
				// Arg finds the first argument of that name.
				v, ok := m.Arg(string(a.Name))
				first := 0
				for first < j && !bytes.Equal(m.Args[first].Name, a.Name) {
					first++
				}
				if !ok || !v.Equal(m.Args[first].Value) {
					t.Fatalf("Arg(%q) is not argument %d", a.Name, first)
				}
			}
			var err error
			enc, err = codec.AppendMessage(enc, string(m.Name), m.Args...)
			if err != nil {
				t.Fatalf("AppendMessage: %v", err)
			}
		}
		if len(enc) != len(b) {
			t.Fatalf("re-encoded payload has %d bytes, input %d", len(enc), len(b))
		}
		if err := n2.Decode(enc); err != nil || len(n2.Messages) != len(n.Messages) {
			t.Fatalf("decode(encode(notify)): %v", err)
		}
		var enc2 []byte
		for i := range n.Messages {
			m, m2 := &n.Messages[i], &n2.Messages[i]
			if !bytes.Equal(m.Name, m2.Name) || len(m.Args) != len(m2.Args) {
				t.Fatalf("message %d changed", i)
			}
			for j := range m.Args {
				a, a2 := m.Args[j], m2.Args[j]
				if !bytes.Equal(a.Name, a2.Name) || a.Value.Type() != a2.Value.Type() || !a.Value.Equal(a2.Value) {
					t.Fatalf("arg %d of message %d changed", j, i)
				}
			}
			enc2, _ = codec.AppendMessage(enc2, string(m2.Name), m2.Args...)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding unstable")
		}
	})
}

func FuzzAck(f *testing.F) {
	addPayloadSeeds(f,
		`01 03 02 05 "score" 02 2a 01 03 02 07 "blocked" 01 02 02 02 03 "foo"`,
		`01 03 02 00 00`,
		`02 02 05 01 "a"`,
		`01 02 02 01 "a" 00`,
		`01 03 04 01 "a" 18 00`,
	)
	var a, a2 codec.Ack
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := a.Decode(b); err != nil {
			mustCodecError(t, err)
			if len(a.Actions) != 0 {
				t.Fatalf("%d actions left after an error", len(a.Actions))
			}
			return
		}
		var enc []byte
		for _, act := range a.Actions {
			if act.Scope > codec.ScopeResponse {
				t.Fatalf("scope %d decoded", act.Scope)
			}
			checkValueAccessors(t, act.Value)
			var err error
			before := len(enc)
			switch act.Type {
			case codec.ActionSetVar:
				enc, err = codec.AppendSetVar(enc, act.Scope, string(act.Name), act.Value)
			case codec.ActionUnsetVar:
				if !act.Value.IsNull() {
					t.Fatalf("unset-var with a value")
				}
				enc, err = codec.AppendUnsetVar(enc, act.Scope, string(act.Name))
			default:
				t.Fatalf("action type %d decoded", act.Type)
			}
			if err != nil {
				// The encoder refuses names HAProxy could not use; the
				// decoder, a test tool, accepts them.
				mustCodecError(t, err)
				if len(act.Name) != 0 && len(act.Name) <= codec.MaxVarNameLen {
					t.Fatalf("encoder refused %q: %v", act.Name, err)
				}
				if len(enc) != before {
					t.Fatalf("encoder appended on error")
				}
				return
			}
		}
		if len(enc) != len(b) {
			t.Fatalf("re-encoded actions have %d bytes, input %d", len(enc), len(b))
		}
		if err := a2.Decode(enc); err != nil || len(a2.Actions) != len(a.Actions) {
			t.Fatalf("decode(encode(actions)): %v", err)
		}
		var enc2 []byte
		for i := range a.Actions {
			x, y := a.Actions[i], a2.Actions[i]
			if x.Type != y.Type || x.Scope != y.Scope || !bytes.Equal(x.Name, y.Name) || x.Value.Type() != y.Value.Type() || !x.Value.Equal(y.Value) {
				t.Fatalf("action %d changed", i)
			}
			if y.Type == codec.ActionSetVar {
				enc2, _ = codec.AppendSetVar(enc2, y.Scope, string(y.Name), y.Value)
			} else {
				enc2, _ = codec.AppendUnsetVar(enc2, y.Scope, string(y.Name))
			}
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding unstable")
		}
		// The whole ACK frame decodes to the same actions.
		frame := codec.AppendAck(nil, 3, 1, enc)
		fr, err := codec.DecodeFrame(frame, codec.MaxFrameLen)
		if err != nil || !bytes.Equal(fr.Payload, enc) || fr.Type != codec.FrameAck || fr.StreamID != 3 || fr.FrameID != 1 {
			t.Fatalf("AppendAck: %v", err)
		}
	})
}

func TestFuzzSeeds(t *testing.T) {
	m := loadManifest(t)
	n := 0
	for _, v := range m.Vectors {
		if len(loadVector(t, v.File)) <= maxSeedLen {
			n++
		}
	}
	// 99 of 2.6, 3.0 and 3.2, and 27 of 3.4's 30 (all but the bodies of
	// 12000 bytes and more, as for 3.2).
	if n != 126 {
		t.Fatalf("%d vectors fit maxSeedLen, want 126", n)
	}
}
