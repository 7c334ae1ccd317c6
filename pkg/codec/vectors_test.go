package codec_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// vectorsDir holds the frames captured from HAProxy 2.6, 3.0, 3.2 and 3.4.
const vectorsDir = "../../testdata/vectors"

// The number of vectors the manifest describes (README.md: 39 + 39 + 30 +
// 30).
const (
	wantVectors          = 138
	wantVectorsOldEngine = 39 // 2.6 and 3.0 each
	wantVectorsSPOP      = 30 // 3.2 and 3.4 each
)

// The manifest, modelled field by field: it is decoded with
// DisallowUnknownFields, so a field added to the manifest fails the test
// until it is checked here (or explicitly ignored with json.RawMessage).
type vManifest struct {
	Format  string    `json:"format"`
	Vectors []vVector `json:"vectors"`
}

type vVector struct {
	File           string       `json:"file"`
	Name           string       `json:"name"`
	HAProxyVersion string       `json:"haproxy_version"`
	Branch         string       `json:"haproxy_branch"`
	Direction      string       `json:"direction"`
	FrameType      json.Number  `json:"frame_type"`
	FrameTypeName  string       `json:"frame_type_name"`
	WireLength     json.Number  `json:"wire_length"`
	Decoded        vDecoded     `json:"decoded"`
	InReplyTo      string       `json:"in_reply_to"`
	Reassembled    *vReassembly `json:"reassembled"`

	// Capture metadata: not frame content.
	Scenario     json.RawMessage `json:"scenario"`
	CaptureRef   json.RawMessage `json:"capture_ref"`
	ConfigFiles  json.RawMessage `json:"config_files"`
	ConfigEnv    json.RawMessage `json:"config_env"`
	Config       json.RawMessage `json:"config"`
	AgentOptions json.RawMessage `json:"agent_options"`
	Notes        json.RawMessage `json:"notes"`
	Trigger      json.RawMessage `json:"trigger"`
	Evidence     json.RawMessage `json:"evidence"`
}

type vDecoded struct {
	Length        json.Number `json:"length"`
	Type          json.Number `json:"type"`
	TypeName      string      `json:"type_name"`
	Flags         json.Number `json:"flags"`
	Fin           bool        `json:"fin"`
	Abort         bool        `json:"abort"`
	StreamID      json.Number `json:"stream_id"`
	FrameID       json.Number `json:"frame_id"`
	PayloadLength json.Number `json:"payload_length"`
	KV            []vNamed    `json:"kv"`
	Messages      []vMessage  `json:"messages"`
	Actions       []vAction   `json:"actions"`
	Payload       *vBlob      `json:"payload"`
}

type vReassembly struct {
	PayloadLength json.Number `json:"payload_length"`
	Messages      []vMessage  `json:"messages"`
}

// vValue is one typed value as the manifest describes it.
type vValue struct {
	Type      string       `json:"type"`
	TypeByte  string       `json:"type_byte"`
	Length    *json.Number `json:"length"`
	Value     any          `json:"value"` // json.Number, string, bool or nil
	ValueHex  *string      `json:"value_hex"`
	SHA256    string       `json:"sha256"`
	HeadHex   string       `json:"head_hex"`
	TailHex   string       `json:"tail_hex"`
	VarintHex string       `json:"varint_hex"`
	RawUint64 json.Number  `json:"raw_uint64"`
	// Only in a NOTIFY fragment: the value's length varint announces more
	// bytes than the fragment holds.
	AnnouncedLength json.Number `json:"announced_length"`
	Truncated       bool        `json:"truncated_in_this_frame"`
}

// vNamed is a KV item or a NOTIFY argument.
type vNamed struct {
	Name string `json:"name"`
	vValue
}

type vMessage struct {
	Name   string      `json:"name"`
	NbArgs json.Number `json:"nb_args"`
	Args   []vNamed    `json:"args"`
}

type vAction struct {
	Action string      `json:"action"`
	NbArgs json.Number `json:"nb_args"`
	Scope  string      `json:"scope"`
	Name   string      `json:"name"`
	Value  *vValue     `json:"value"`
}

type vBlob struct {
	Length  json.Number `json:"length"`
	SHA256  string      `json:"sha256"`
	HeadHex string      `json:"head_hex"`
	TailHex string      `json:"tail_hex"`
}

func loadManifest(t testing.TB) vManifest {
	t.Helper()
	f, err := os.Open(filepath.Join(vectorsDir, "manifest.json"))
	require.NoError(t, err)
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.UseNumber() // int64/uint64 values do not survive float64
	dec.DisallowUnknownFields()
	var m vManifest
	require.NoError(t, dec.Decode(&m))
	return m
}

// loadVector reads one .hex file: the whole frame, length prefix included.
func loadVector(t testing.TB, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vectorsDir, filepath.FromSlash(file)))
	require.NoError(t, err)
	s := string(raw)
	require.True(t, strings.HasSuffix(s, "\n"), "%s: one line ending in a newline", file)
	s = strings.TrimSuffix(s, "\n")
	require.Equal(t, strings.ToLower(s), s, "%s: lowercase hex", file)
	b, err := hex.DecodeString(s)
	require.NoError(t, err, file)
	return b
}

func num[T int64 | uint64 | int | uint32 | uint8](t testing.TB, n json.Number) T {
	t.Helper()
	s := n.String()
	require.NotEmpty(t, s, "missing number")
	if strings.HasPrefix(s, "-") {
		v, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err)
		require.Equal(t, v, int64(T(v)), "%s does not fit %T", s, T(0))
		return T(v)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err)
	require.Equal(t, v, uint64(T(v)), "%s does not fit %T", s, T(0))
	return T(v)
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// TestVectors checks every frame captured from HAProxy against the
// manifest's independent decoding of it.
func TestVectors(t *testing.T) {
	m := loadManifest(t)
	require.Len(t, m.Vectors, wantVectors)
	t.Logf("manifest: %d vectors", len(m.Vectors))

	perBranch := map[string]int{}
	byFile := map[string]*vVector{}
	for i := range m.Vectors {
		v := &m.Vectors[i]
		perBranch[v.Branch]++
		require.NotContains(t, byFile, v.File, "duplicate file")
		byFile[v.File] = v
	}
	require.Equal(t, map[string]int{"2.6": wantVectorsOldEngine, "3.0": wantVectorsOldEngine, "3.2": wantVectorsSPOP, "3.4": wantVectorsSPOP}, perBranch)

	// Every .hex file on disk is in the manifest.
	onDisk, err := filepath.Glob(filepath.Join(vectorsDir, "*", "*.hex"))
	require.NoError(t, err)
	require.Len(t, onDisk, wantVectors)

	checked := 0
	st := vStats{}
	for i := range m.Vectors {
		v := &m.Vectors[i]
		t.Run(v.File, func(t *testing.T) {
			checkVector(t, v, byFile, st)
			checked++
		})
	}
	require.Equal(t, wantVectors, checked, "every vector checked")
	t.Logf("checks done: %v", st)
	// Every agent->haproxy frame re-encoded byte for byte from the manifest.
	require.Equal(t, map[string]int{
		"agent->haproxy":              52,
		"reencoded agent->haproxy":    52,
		"AppendAgentHello":            16, // all but the four "1.0" ones
		"AppendDisconnect agent":      6,
		"AppendAck":                   26,
		"haproxy->agent":              86,
		"AppendHAProxyHello":          12,
		"AppendDisconnect haproxy":    16,
		"AppendMessage NOTIFY":        52, // all but the two first fragments
		"first fragment":              2,
		"UNSET":                       4,
		"reassembled":                 2,
		"ParseKVList+typed KV frames": 54,
		"generic BeginFrame+AppendKV": 54,
	}, map[string]int(st))
}

// vStats counts which checks ran, so that a vector silently skipping one
// fails the test.
type vStats map[string]int

func checkVector(t *testing.T, v *vVector, byFile map[string]*vVector, st vStats) {
	st[v.Direction]++
	b := loadVector(t, v.File)
	d := &v.Decoded
	require.True(t, strings.HasPrefix(v.File, v.Branch+"/"), "file in its branch's folder")
	require.True(t, strings.HasPrefix(v.HAProxyVersion, v.Branch+"."), "version %s of branch %s", v.HAProxyVersion, v.Branch)

	// Header.
	require.Equal(t, num[int](t, v.WireLength), len(b), "wire_length")
	require.Equal(t, num[uint32](t, d.Length), binary.BigEndian.Uint32(b), "length prefix")
	require.Equal(t, len(b)-codec.LengthPrefixLen, num[int](t, d.Length))
	f, err := codec.DecodeFrame(b, codec.MaxFrameLen)
	require.NoError(t, err)
	require.Equal(t, num[uint8](t, d.Type), uint8(f.Type), "type")
	require.Equal(t, num[uint8](t, v.FrameType), uint8(f.Type), "frame_type")
	require.Equal(t, d.TypeName, f.Type.String())
	require.Equal(t, v.FrameTypeName, f.Type.String())
	require.Equal(t, num[uint32](t, d.Flags), uint32(f.Flags), "flags")
	require.Equal(t, d.Fin, f.Flags.Fin(), "fin")
	require.Equal(t, d.Abort, f.Flags.Abort(), "abort")
	require.Equal(t, num[uint64](t, d.StreamID), f.StreamID, "stream_id")
	require.Equal(t, num[uint64](t, d.FrameID), f.FrameID, "frame_id")
	require.Equal(t, num[int](t, d.PayloadLength), len(f.Payload), "payload_length")
	require.Equal(t, f.Payload, b[len(b)-len(f.Payload):], "payload ends the frame")

	// The same through the streaming API, with the limit exactly LENGTH.
	frame, n, need, err := codec.NextFrame(b, num[uint32](t, d.Length))
	require.NoError(t, err)
	require.Equal(t, len(b), n)
	require.Equal(t, len(b), need)
	pf, err := codec.ParseFrame(frame)
	require.NoError(t, err)
	require.Equal(t, f, pf)
	_, _, _, err = codec.NextFrame(b, num[uint32](t, d.Length)-1)
	require.ErrorIs(t, err, codec.ErrFrameTooBig)

	// The header re-encodes byte for byte.
	require.Equal(t, b[codec.LengthPrefixLen:len(b)-len(f.Payload)], codec.AppendHeader(nil, f.Header))

	toAgent := f.Type <= codec.FrameNotify
	if toAgent {
		require.Equal(t, "haproxy->agent", v.Direction)
	} else {
		require.Equal(t, "agent->haproxy", v.Direction)
	}

	switch f.Type {
	case codec.FrameHAProxyHello, codec.FrameAgentHello, codec.FrameHAProxyDisconnect, codec.FrameAgentDisconnect:
		require.Nil(t, d.Messages)
		require.Nil(t, d.Actions)
		require.Nil(t, d.Payload)
		require.Zero(t, f.StreamID)
		require.Zero(t, f.FrameID)
		checkKVFrame(t, v, f, b, byFile, st)
		if !toAgent {
			st["reencoded agent->haproxy"]++
		}
	case codec.FrameNotify:
		require.Nil(t, d.KV)
		if f.Flags.Fin() {
			checkMessages(t, f.Payload, d.Messages)
			reencodeNotify(t, f.Header, d.Messages, b)
			st["AppendMessage NOTIFY"]++
		} else {
			checkFirstFragment(t, f.Payload, d.Messages)
			st["first fragment"]++
		}
	case codec.FrameUnset:
		require.NotNil(t, d.Payload)
		checkBlob(t, f.Payload, num[int](t, d.Payload.Length), d.Payload.SHA256, d.Payload.HeadHex, d.Payload.TailHex)
		st["UNSET"]++
		if v.Reassembled != nil {
			checkReassembly(t, v, byFile)
			st["reassembled"]++
		}
	case codec.FrameAck:
		checkAck(t, f, d.Actions, b)
		st["AppendAck"]++
		st["reencoded agent->haproxy"]++
		if v.InReplyTo != "" {
			n := byFile[v.InReplyTo]
			require.NotNil(t, n, "in_reply_to %s", v.InReplyTo)
			// The NOTIFY, or the last fragment of a fragmented one.
			require.Contains(t, []string{"NOTIFY", "UNSET"}, n.FrameTypeName)
			require.True(t, n.Decoded.Fin)
			require.Equal(t, n.Decoded.StreamID, d.StreamID, "ACK echoes the stream-id")
			require.Equal(t, n.Decoded.FrameID, d.FrameID, "ACK echoes the frame-id")
		}
	default:
		t.Fatalf("unexpected frame type %v", f.Type)
	}
	if v.Reassembled != nil {
		require.Equal(t, codec.FrameUnset, f.Type, "reassembled is on the last fragment")
		require.True(t, f.Flags.Fin())
	}
}

// rawValue decodes the typed value at the start of b and also returns the
// bytes it spans, so that the type byte and the varint can be checked.
func rawValue(t testing.TB, b []byte) (codec.Value, []byte) {
	t.Helper()
	val, n, err := codec.ParseValue(b)
	require.NoError(t, err)
	require.Equal(t, n, codec.ValueLen(val), "ValueLen of a decoded value")
	return val, b[:n]
}

// checkValue compares a decoded value, and the bytes it was decoded from,
// with the manifest.
func checkValue(t testing.TB, want *vValue, got codec.Value, raw []byte) {
	t.Helper()
	tb, err := strconv.ParseUint(strings.TrimPrefix(want.TypeByte, "0x"), 16, 8)
	require.NoError(t, err, "type_byte %q", want.TypeByte)
	require.True(t, strings.HasPrefix(want.TypeByte, "0x"))
	require.Equal(t, byte(tb), raw[0], "type_byte")
	require.Equal(t, want.Type, got.Type().String(), "type")

	switch got.Type() {
	case codec.TypeNull:
		require.Nil(t, want.Value)
		require.True(t, got.IsNull())
		require.Len(t, raw, 1)
	case codec.TypeBool:
		wb, ok := want.Value.(bool)
		require.True(t, ok, "bool value")
		gb, ok := got.Bool()
		require.True(t, ok)
		require.Equal(t, wb, gb)
		require.Len(t, raw, 1)
	case codec.TypeInt32, codec.TypeUint32, codec.TypeInt64, codec.TypeUint64:
		require.Equal(t, want.VarintHex, hex.EncodeToString(raw[1:]), "varint_hex")
		wn, ok := want.Value.(json.Number)
		require.True(t, ok, "integer value")
		u, ok := got.Uint()
		require.True(t, ok)
		i, ok := got.Int()
		require.True(t, ok)
		if strings.HasPrefix(wn.String(), "-") {
			require.Equal(t, num[int64](t, wn), i, "value")
			require.Equal(t, num[uint64](t, want.RawUint64), u, "raw_uint64")
			require.Equal(t, u, uint64(i))
		} else {
			require.Equal(t, num[uint64](t, wn), u, "value")
			require.Empty(t, want.RawUint64.String(), "raw_uint64 only for negative values")
		}
		require.Equal(t, raw[1:], codec.AppendVarint(nil, u), "canonical varint")
	case codec.TypeIPv4, codec.TypeIPv6:
		ws, ok := want.Value.(string)
		require.True(t, ok, "address value")
		wa, err := netip.ParseAddr(ws)
		require.NoError(t, err)
		ga, ok := got.Addr()
		require.True(t, ok)
		require.Equal(t, wa, ga)
		require.Equal(t, got.Type() == codec.TypeIPv4, wa.Is4())
	case codec.TypeString, codec.TypeBinary:
		data, ok := got.Bytes()
		require.True(t, ok)
		s, ok := got.String()
		require.True(t, ok)
		require.Equal(t, string(data), s)
		lv, ln, err := codec.ParseVarint(raw[1:])
		require.NoError(t, err)
		require.Equal(t, len(raw)-1-ln, len(data))
		require.Equal(t, uint64(len(data)), lv)
		switch {
		case want.SHA256 != "":
			require.Nil(t, want.ValueHex)
			require.Nil(t, want.Value)
			require.NotNil(t, want.Length)
			checkBlob(t, data, num[int](t, *want.Length), want.SHA256, want.HeadHex, want.TailHex)
		case want.ValueHex != nil:
			require.Equal(t, codec.TypeBinary, got.Type())
			require.Equal(t, unhex(t, *want.ValueHex), data, "value_hex")
		default:
			require.Equal(t, codec.TypeString, got.Type())
			ws, ok := want.Value.(string)
			require.True(t, ok, "string value")
			require.Equal(t, ws, s, "value")
		}
		if want.Length != nil {
			require.Equal(t, num[int](t, *want.Length), len(data), "length")
		}
	default:
		t.Fatalf("unexpected type %v", got.Type())
	}
	require.Empty(t, want.AnnouncedLength.String(), "announced_length only on a cut value")
	require.False(t, want.Truncated)
	// A value re-encodes to its bytes (BOOL and the flag-free types HAProxy
	// sends are canonical).
	require.Equal(t, raw, codec.AppendValue(nil, got), "value re-encodes")
}

func checkBlob(t testing.TB, data []byte, length int, sum, head, tail string) {
	t.Helper()
	require.Len(t, data, length, "length")
	h := sha256.Sum256(data)
	require.Equal(t, sum, hex.EncodeToString(h[:]), "sha256")
	hb, tb := unhex(t, head), unhex(t, tail)
	require.True(t, bytes.HasPrefix(data, hb), "head_hex")
	require.True(t, bytes.HasSuffix(data, tb), "tail_hex")
}

// manifestValue builds the codec.Value the manifest describes, from the
// manifest alone.
func manifestValue(t testing.TB, want *vValue) codec.Value {
	t.Helper()
	switch want.Type {
	case "null":
		return codec.Null()
	case "bool":
		return codec.Bool(want.Value.(bool))
	case "int32":
		return codec.Int32(int32Of(t, num[int64](t, want.Value.(json.Number))))
	case "uint32":
		return codec.Uint32(num[uint32](t, want.Value.(json.Number)))
	case "int64":
		return codec.Int64(num[int64](t, want.Value.(json.Number)))
	case "uint64":
		return codec.Uint64(num[uint64](t, want.Value.(json.Number)))
	case "ipv4", "ipv6":
		return codec.Addr(netip.MustParseAddr(want.Value.(string)))
	case "string":
		if want.SHA256 != "" {
			return codec.String(string(patternBlob(t, want)))
		}
		return codec.String(want.Value.(string))
	case "binary":
		if want.SHA256 != "" {
			return codec.Binary(patternBlob(t, want))
		}
		return codec.Binary(unhex(t, *want.ValueHex))
	}
	t.Fatalf("unknown manifest type %q", want.Type)
	return codec.Value{}
}

func int32Of(t testing.TB, v int64) int32 {
	t.Helper()
	require.Equal(t, v, int64(int32(v)), "%d does not fit int32", v)
	return int32(v)
}

// patternBlob rebuilds a large value that the manifest only describes by its
// hash. The capture's bodies are the bytes 0, 1, ..., 255, 0, 1, ...; the
// hash proves it.
func patternBlob(t testing.TB, want *vValue) []byte {
	t.Helper()
	b := make([]byte, num[int](t, *want.Length))
	for i := range b {
		b[i] = byte(i)
	}
	checkBlob(t, b, len(b), want.SHA256, want.HeadHex, want.TailHex)
	return b
}

// checkKVFrame checks a HELLO or DISCONNECT frame: its KV-LIST through
// ParseKVList and through the typed decoder, then re-encodes it.
func checkKVFrame(t *testing.T, v *vVector, f codec.Frame, b []byte, byFile map[string]*vVector, st vStats) {
	st["ParseKVList+typed KV frames"]++
	d := &v.Decoded
	require.NotEmpty(t, d.KV)

	kvs, err := codec.ParseKVList(nil, f.Payload)
	require.NoError(t, err)
	require.Len(t, kvs, len(d.KV))
	rest := f.Payload
	for i := range d.KV {
		want := &d.KV[i]
		kv, n, err := codec.NextKV(rest)
		require.NoError(t, err)
		require.Equal(t, want.Name, string(kv.Name), "name of item %d", i)
		require.Equal(t, want.Name, string(kvs[i].Name))
		require.True(t, kv.Value.Equal(kvs[i].Value))
		name, ln, err := codec.ParseBytes(rest)
		require.NoError(t, err)
		require.Equal(t, kv.Name, name)
		_, raw := rawValue(t, rest[ln:])
		require.Equal(t, n, ln+len(raw))
		checkValue(t, &want.vValue, kv.Value, raw)
		rest = rest[n:]
	}
	require.Empty(t, rest)

	item := func(name string) *vNamed {
		for i := range d.KV {
			if d.KV[i].Name == name {
				return &d.KV[i]
			}
		}
		return nil
	}
	str := func(name string) []byte {
		if it := item(name); it != nil {
			return []byte(it.Value.(string))
		}
		return nil
	}

	// Typed decoders.
	switch f.Type {
	case codec.FrameHAProxyHello:
		var h codec.HAProxyHello
		require.NoError(t, h.Decode(f.Payload))
		require.Equal(t, str("supported-versions"), h.SupportedVersions)
		mfs := item("max-frame-size")
		require.NotNil(t, mfs)
		require.True(t, h.HasMaxFrameSize)
		require.Equal(t, num[uint32](t, mfs.Value.(json.Number)), h.MaxFrameSize)
		require.Equal(t, str("capabilities"), h.RawCapabilities)
		require.Equal(t, codec.ParseCapabilities(str("capabilities")), h.Capabilities)
		require.Equal(t, str("engine-id"), h.EngineID)
		hc := item("healthcheck")
		require.Equal(t, hc != nil && hc.Value.(bool), h.Healthcheck)
		require.NoError(t, h.Validate(), "HAProxy's own offer is valid")

		// Re-encode from the manifest's fields with AppendHAProxyHello.
		want := codec.HAProxyHello{
			SupportedVersions: str("supported-versions"),
			MaxFrameSize:      num[uint32](t, mfs.Value.(json.Number)),
			HasMaxFrameSize:   true,
			RawCapabilities:   str("capabilities"),
			EngineID:          str("engine-id"),
			Healthcheck:       hc != nil && hc.Value.(bool),
		}
		require.Equal(t, b, codec.AppendHAProxyHello(nil, &want), "AppendHAProxyHello")
		st["AppendHAProxyHello"]++
		// And from parsed capabilities, when they spell the same list.
		want.RawCapabilities = nil
		want.Capabilities = codec.ParseCapabilities(str("capabilities"))
		if want.Capabilities.String() == string(str("capabilities")) {
			require.Equal(t, b, codec.AppendHAProxyHello(nil, &want), "AppendHAProxyHello from Capabilities")
		}

	case codec.FrameAgentHello:
		var h codec.AgentHello
		require.NoError(t, h.Decode(f.Payload))
		require.Equal(t, str("version"), h.Version)
		mfs := item("max-frame-size")
		require.Equal(t, mfs != nil, h.HasMaxFrameSize)
		require.Equal(t, num[uint32](t, mfs.Value.(json.Number)), h.MaxFrameSize)
		require.Equal(t, item("capabilities") != nil, h.HasCapabilities)
		require.Equal(t, codec.ParseCapabilities(str("capabilities")), h.Capabilities)

		// Validate against the offer of the HELLO it answers, and agree
		// with HAProxy's verdict when the capture has one.
		offer := uint32(codec.DefaultMaxFrameSize)
		if hh := byFile[v.InReplyTo]; hh != nil {
			for _, kv := range hh.Decoded.KV {
				if kv.Name == "max-frame-size" {
					offer = num[uint32](t, kv.Value.(json.Number))
				}
			}
		}
		wantStatus := codec.StatusNormal
		for _, other := range byFile {
			if other.InReplyTo == v.File && other.FrameTypeName == "HAPROXY-DISCONNECT" {
				for _, kv := range other.Decoded.KV {
					if kv.Name == "status-code" {
						wantStatus = codec.Status(num[uint32](t, kv.Value.(json.Number)))
					}
				}
			}
		}
		switch v.Name {
		case "agent-hello-unsupported-version":
			require.Equal(t, codec.StatusBadVersion, wantStatus)
		case "agent-hello-bad-max-frame-size":
			require.Equal(t, codec.StatusBadFrameSize, wantStatus)
		}
		require.Equal(t, wantStatus, codec.StatusOf(h.Validate(offer)), "Validate agrees with HAProxy")

		// AppendAgentHello, when the frame has exactly its three items.
		if len(d.KV) == 3 && d.KV[0].Name == "version" && d.KV[0].Value == "2.0" &&
			d.KV[1].Name == "max-frame-size" && d.KV[1].Type == "uint32" &&
			d.KV[2].Name == "capabilities" && d.KV[2].Type == "string" {
			caps := codec.ParseCapabilities(str("capabilities"))
			require.Equal(t, string(str("capabilities")), caps.String())
			got := codec.AppendAgentHello(nil, num[uint32](t, d.KV[1].Value.(json.Number)), caps)
			require.Equal(t, b, got, "AppendAgentHello")
			st["AppendAgentHello"]++
		} else {
			require.Contains(t, []string{"agent-hello-unsupported-version"}, v.Name, "only the bad version is not AppendAgentHello's")
		}

	case codec.FrameHAProxyDisconnect, codec.FrameAgentDisconnect:
		var dc codec.Disconnect
		require.NoError(t, dc.Decode(f.Payload))
		sc := item("status-code")
		require.NotNil(t, sc)
		require.True(t, dc.HasStatus)
		status := codec.Status(num[uint32](t, sc.Value.(json.Number)))
		require.Equal(t, status, dc.Status)
		require.Equal(t, str("message"), dc.Message)
		if f.Type == codec.FrameHAProxyDisconnect {
			// HAProxy's messages are its fixed texts, which Status.String
			// reproduces.
			require.Equal(t, status.String(), string(dc.Message))
		}
		require.Len(t, d.KV, 2)
		got := codec.AppendDisconnect(nil, f.Type, status, string(str("message")))
		require.Equal(t, b, got, "AppendDisconnect")
		if f.Type == codec.FrameAgentDisconnect {
			st["AppendDisconnect agent"]++
		} else {
			st["AppendDisconnect haproxy"]++
		}
	}

	// Generic re-encoding from the manifest: BeginFrame, AppendKV for each
	// item, FinishFrame to patch the length.
	hdr := codec.Header{
		Type:     codec.FrameType(num[uint8](t, d.Type)),
		Flags:    codec.Flags(num[uint32](t, d.Flags)),
		StreamID: num[uint64](t, d.StreamID),
		FrameID:  num[uint64](t, d.FrameID),
	}
	got, start := codec.BeginFrame([]byte("junk"), hdr)
	for i := range d.KV {
		got = codec.AppendKV(got, d.KV[i].Name, manifestValue(t, &d.KV[i].vValue))
	}
	l, err := codec.FinishFrame(got, start, num[uint32](t, d.Length))
	require.NoError(t, err)
	require.Equal(t, num[uint32](t, d.Length), l)
	require.Equal(t, b, got[start:], "BeginFrame+AppendKV+FinishFrame")
	require.Equal(t, "junk", string(got[:start]))
	st["generic BeginFrame+AppendKV"]++
}

// checkMessages decodes a whole NOTIFY payload and compares it with the
// manifest, arg by arg, also walking the raw bytes to check type bytes and
// varints.
func checkMessages(t testing.TB, payload []byte, want []vMessage) {
	t.Helper()
	var n codec.Notify
	require.NoError(t, n.Decode(payload))
	require.Len(t, n.Messages, len(want))
	rest := payload
	for i := range want {
		wm, gm := &want[i], &n.Messages[i]
		require.Equal(t, wm.Name, string(gm.Name), "message %d", i)
		nb := num[int](t, wm.NbArgs)
		require.Len(t, wm.Args, nb)
		require.Len(t, gm.Args, nb)
		m, ok := n.Message(wm.Name)
		require.True(t, ok)
		require.Equal(t, wm.Name, string(m.Name))

		name, l, err := codec.ParseBytes(rest)
		require.NoError(t, err)
		require.Equal(t, wm.Name, string(name))
		require.Equal(t, byte(nb), rest[l], "nb-args byte")
		rest = rest[l+1:]
		for j := range wm.Args {
			wa, ga := &wm.Args[j], &gm.Args[j]
			require.Equal(t, wa.Name, string(ga.Name), "arg %d of %s", j, wm.Name)
			an, l, err := codec.ParseBytes(rest)
			require.NoError(t, err)
			require.Equal(t, ga.Name, an)
			val, raw := rawValue(t, rest[l:])
			require.True(t, val.Equal(ga.Value))
			checkValue(t, &wa.vValue, ga.Value, raw)
			rest = rest[l+len(raw):]

			// Arg finds the first argument of that name.
			first := -1
			for k := range wm.Args {
				if wm.Args[k].Name == wa.Name {
					first = k
					break
				}
			}
			av, ok := gm.Arg(wa.Name)
			require.True(t, ok)
			require.True(t, av.Equal(gm.Args[first].Value))
		}
	}
	require.Empty(t, rest)
}

// reencodeNotify rebuilds a NOTIFY from the manifest with AppendMessage.
func reencodeNotify(t testing.TB, h codec.Header, want []vMessage, b []byte) {
	t.Helper()
	var payload []byte
	for i := range want {
		args := make([]codec.Arg, len(want[i].Args))
		for j := range want[i].Args {
			args[j] = codec.Arg{Name: []byte(want[i].Args[j].Name), Value: manifestValue(t, &want[i].Args[j].vValue)}
		}
		var err error
		payload, err = codec.AppendMessage(payload, want[i].Name, args...)
		require.NoError(t, err)
	}
	require.Equal(t, b, codec.AppendFrame(nil, h, payload), "NOTIFY re-encodes")
}

// checkFirstFragment checks the first frame of a fragmented NOTIFY: its
// payload is a message list cut inside the last value, which the manifest
// describes up to the cut.
func checkFirstFragment(t testing.TB, payload []byte, want []vMessage) {
	t.Helper()
	var n codec.Notify
	require.ErrorIs(t, n.Decode(payload), codec.ErrTruncated, "a partial message list does not decode")
	require.Empty(t, n.Messages)

	rest := payload
	cut := false
	for i := range want {
		wm := &want[i]
		name, l, err := codec.ParseBytes(rest)
		require.NoError(t, err)
		require.Equal(t, wm.Name, string(name))
		require.Equal(t, byte(num[int](t, wm.NbArgs)), rest[l])
		rest = rest[l+1:]
		for j := range wm.Args {
			wa := &wm.Args[j]
			an, l, err := codec.ParseBytes(rest)
			require.NoError(t, err)
			require.Equal(t, wa.Name, string(an))
			rest = rest[l:]
			if !wa.Truncated {
				val, raw := rawValue(t, rest)
				checkValue(t, &wa.vValue, val, raw)
				rest = rest[len(raw):]
				continue
			}
			// The cut value: type byte, the full length, then what fits.
			require.Equal(t, len(want)-1, i, "only the last value is cut")
			require.Equal(t, len(wm.Args)-1, j)
			_, _, err = codec.ParseValue(rest)
			require.ErrorIs(t, err, codec.ErrTruncated)
			require.Equal(t, wa.TypeByte, fmt.Sprintf("0x%02x", rest[0]))
			al, vl, err := codec.ParseVarint(rest[1:])
			require.NoError(t, err)
			require.Equal(t, num[uint64](t, wa.AnnouncedLength), al)
			data := rest[1+vl:]
			require.Less(t, uint64(len(data)), al)
			checkBlob(t, data, num[int](t, *wa.Length), wa.SHA256, wa.HeadHex, wa.TailHex)
			rest, cut = nil, true
		}
	}
	require.True(t, cut, "the first fragment ends inside a value")
	require.Empty(t, rest)
}

// checkReassembly concatenates the three fragments of a branch's NOTIFY and
// checks the result against the last fragment's reassembled field.
func checkReassembly(t testing.TB, last *vVector, byFile map[string]*vVector) {
	t.Helper()
	var payload []byte
	var first codec.Header
	for i := 1; i <= 3; i++ {
		file := fmt.Sprintf("%s/notify-fragment-%d-of-3.hex", last.Branch, i)
		fv := byFile[file]
		require.NotNil(t, fv, file)
		f, err := codec.DecodeFrame(loadVector(t, file), codec.MaxFrameLen)
		require.NoError(t, err)
		if i == 1 {
			require.Equal(t, codec.FrameNotify, f.Type)
			first = f.Header
		} else {
			require.Equal(t, codec.FrameUnset, f.Type)
			require.Equal(t, first.StreamID, f.StreamID, "fragments share the stream-id")
			require.Equal(t, first.FrameID, f.FrameID, "fragments share the frame-id")
		}
		require.Equal(t, i == 3, f.Flags.Fin(), "FIN only on the last fragment")
		require.False(t, f.Flags.Abort())
		payload = append(payload, f.Payload...)
	}
	require.Equal(t, num[int](t, last.Reassembled.PayloadLength), len(payload))
	checkMessages(t, payload, last.Reassembled.Messages)
}

// checkAck decodes an ACK with Ack.Decode, checks every action and its raw
// bytes, and re-encodes it from the manifest.
func checkAck(t testing.TB, f codec.Frame, want []vAction, b []byte) {
	t.Helper()
	var a codec.Ack
	require.NoError(t, a.Decode(f.Payload))
	require.Len(t, a.Actions, len(want))

	var actions []byte
	rest := f.Payload
	for i := range want {
		wa, ga := &want[i], &a.Actions[i]
		require.Equal(t, wa.Action, ga.Type.String(), "action %d", i)
		require.Equal(t, wa.Scope, ga.Scope.String())
		require.Equal(t, wa.Name, string(ga.Name))
		nb := num[uint8](t, wa.NbArgs)
		require.Equal(t, byte(ga.Type), rest[0])
		require.Equal(t, nb, rest[1], "nb_args")
		require.Equal(t, byte(ga.Scope), rest[2])
		name, l, err := codec.ParseBytes(rest[3:])
		require.NoError(t, err)
		require.Equal(t, ga.Name, name)
		rest = rest[3+l:]

		scope := scopeByName(t, wa.Scope)
		switch ga.Type {
		case codec.ActionSetVar:
			require.Equal(t, uint8(3), nb)
			require.NotNil(t, wa.Value)
			val, raw := rawValue(t, rest)
			require.True(t, val.Equal(ga.Value))
			checkValue(t, wa.Value, ga.Value, raw)
			rest = rest[len(raw):]
			actions, err = codec.AppendSetVar(actions, scope, wa.Name, manifestValue(t, wa.Value))
		case codec.ActionUnsetVar:
			require.Equal(t, uint8(2), nb)
			require.Nil(t, wa.Value)
			require.True(t, ga.Value.IsNull())
			actions, err = codec.AppendUnsetVar(actions, scope, wa.Name)
		default:
			t.Fatalf("action type %v", ga.Type)
		}
		require.NoError(t, err)
		act, ok := a.Action(wa.Name)
		require.True(t, ok)
		require.Equal(t, wa.Name, string(act.Name))
	}
	require.Empty(t, rest)
	require.Equal(t, string(f.Payload), string(actions), "actions re-encode")
	require.Equal(t, b, codec.AppendAck(nil, f.StreamID, f.FrameID, actions), "AppendAck")

	// The same ACK built the way an agent does it: BeginFrame, actions,
	// FinishFrame under the negotiated limit.
	got, start := codec.BeginFrame(nil, codec.Header{Type: codec.FrameAck, Flags: codec.FlagFin, StreamID: f.StreamID, FrameID: f.FrameID})
	got = append(got, actions...)
	_, err := codec.FinishFrame(got, start, codec.DefaultMaxFrameSize-1)
	require.NoError(t, err)
	require.Equal(t, b, got)
}

func scopeByName(t testing.TB, name string) codec.Scope {
	t.Helper()
	for s := codec.ScopeProcess; s <= codec.ScopeResponse; s++ {
		if s.String() == name {
			return s
		}
	}
	t.Fatalf("unknown scope %q", name)
	return 0
}

// TestVectorsSPOPBranchesAgree compares the frames of HAProxy 3.4 with those
// of 3.2, vector by vector, and pins the differences that README.md lists:
// every frame is byte-for-byte 3.2's except for values that change from run
// to run (engine-id, client port, which client's request went first, the
// capture agent's ACK order), fe_id (3.4 numbers its proxies from 2) and how
// much of a 60000-byte upload HAProxy had buffered.
func TestVectorsSPOPBranchesAgree(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(vectorsDir, "manifest.json"))
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m struct {
		Vectors []map[string]any `json:"vectors"`
	}
	require.NoError(t, dec.Decode(&m))
	byBranch := map[string]map[string]map[string]any{}
	for _, v := range m.Vectors {
		b := v["haproxy_branch"].(string)
		if byBranch[b] == nil {
			byBranch[b] = map[string]map[string]any{}
		}
		byBranch[b][v["name"].(string)] = v
	}
	v32, v34 := byBranch["3.2"], byBranch["3.4"]
	require.Len(t, v34, wantVectorsSPOP)
	names := keys(v32)
	slices.Sort(names)
	require.ElementsMatch(t, names, keys(v34), "3.4 has the vectors 3.2 has")

	pipelinedNotify := []string{"messages[msg-types].args[path].value", "messages[msg-types].args[reqid].value"}
	pipelinedAck := []string{"actions[ack_order].value.value", "actions[ack_order].value.varint_hex", "actions[echo].value.value"}
	allowed := map[string][]string{
		"haproxy-hello":           {"kv[engine-id].value"},
		"haproxy-hello-mfs-65532": {"kv[engine-id].value"},
		"notify-client-session": {
			"messages[msg-session].args[src_port].value", "messages[msg-session].args[src_port].varint_hex",
			"messages[msg-session].args[fe].value", "messages[msg-session].args[fe].varint_hex",
		},
		"notify-body-60000-truncated": {
			"length", "payload_length",
			"messages[msg-bigbody].args[len].value", "messages[msg-bigbody].args[len].varint_hex",
			"messages[msg-bigbody].args[body].length", "messages[msg-bigbody].args[body].sha256", "messages[msg-bigbody].args[body].tail_hex",
		},
		"pipelined-notify-1": pipelinedNotify, "pipelined-notify-2": pipelinedNotify,
		"pipelined-notify-3": pipelinedNotify, "pipelined-notify-4": pipelinedNotify,
		"pipelined-ack-1": pipelinedAck, "pipelined-ack-2": pipelinedAck,
		"pipelined-ack-3": pipelinedAck, "pipelined-ack-4": pipelinedAck,
	}
	identical := 0
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			a, b := v32[n], v34[n]
			var diffs []string
			diffJSON("", a["decoded"], b["decoded"], &diffs)
			require.ElementsMatch(t, allowed[n], diffs, "fields of %s that differ between 3.2 and 3.4", n)
			if len(diffs) == 0 {
				require.Equal(t, loadVector(t, a["file"].(string)), loadVector(t, b["file"].(string)), "byte for byte")
				identical++
			}
		})
	}
	require.Equal(t, wantVectorsSPOP-len(allowed), identical, "vectors byte-identical in 3.2 and 3.4")

	// HAProxy 3.4 stored the ACKs' variables as 3.2 did: the response bodies
	// that print them are the same.
	bodies := func(v map[string]any) []string {
		var out []string
		for _, e := range v["evidence"].([]any) {
			out = append(out, e.(map[string]any)["response_body"].(string))
		}
		return out
	}
	for _, n := range []string{"ack-all-types", "ack-empty"} {
		require.NotEmpty(t, bodies(v34[n]))
		require.Equal(t, bodies(v32[n]), bodies(v34[n]), "%s: the variables HAProxy stored", n)
	}

	// The one difference in a value HAProxy computes from the configuration:
	// fe_id of the first frontend is 1 in 3.2 and 2 in 3.4.
	fe := func(v map[string]any) string {
		for _, a := range v["decoded"].(map[string]any)["messages"].([]any)[0].(map[string]any)["args"].([]any) {
			if a.(map[string]any)["name"] == "fe" {
				return a.(map[string]any)["value"].(json.Number).String()
			}
		}
		return ""
	}
	require.Equal(t, "1", fe(v32["notify-client-session"]))
	require.Equal(t, "2", fe(v34["notify-client-session"]))
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// diffJSON appends to diffs the paths of the leaves that differ between a
// and b, two decoded manifest objects. List items that have a "name" (KV
// items, messages, arguments, actions) are named by it rather than by their
// index, so that the paths say what differs.
func diffJSON(path string, a, b any, diffs *[]string) {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			*diffs = append(*diffs, path)
			return
		}
		seen := map[string]bool{}
		for k := range x {
			seen[k] = true
			diffJSON(join(k), x[k], y[k], diffs)
		}
		for k := range y {
			if !seen[k] {
				diffJSON(join(k), nil, y[k], diffs)
			}
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			*diffs = append(*diffs, path)
			return
		}
		for i := range x {
			label := fmt.Sprint(i)
			if o, ok := x[i].(map[string]any); ok {
				if name, ok := o["name"].(string); ok {
					label = name
				}
			}
			diffJSON(path+"["+label+"]", x[i], y[i], diffs)
		}
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			*diffs = append(*diffs, path)
		}
	}
}
