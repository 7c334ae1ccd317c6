package codec_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// hx decodes hex written for people: spaces, newlines and a quoted string
// ("abc" stands for its bytes) are allowed, e.g. hx(`0d "check-request" 06`).
// It panics on malformed input, which can only come from a test's own
// literals.
func hx(s string) []byte {
	var out []byte
	for len(s) > 0 {
		switch c := s[0]; {
		case c == ' ' || c == '\n' || c == '\t':
			s = s[1:]
		case c == '"':
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				panic("hx: unterminated string in " + s)
			}
			out = append(out, s[1:1+end]...)
			s = s[end+2:]
		default:
			if len(s) < 2 {
				panic("hx: odd hex digit in " + s)
			}
			b, err := hex.DecodeString(s[:2])
			if err != nil {
				panic("hx: " + err.Error())
			}
			out = append(out, b...)
			s = s[2:]
		}
	}
	return out
}

// cat concatenates byte slices into a new one.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// requireCodecError checks that err is a *codec.Error (possibly wrapped).
func requireCodecError(t testing.TB, err error) {
	t.Helper()
	var ce *codec.Error
	require.True(t, errors.As(err, &ce), "error %v (%T) is not a *codec.Error", err, err)
}

// requireStatus checks that err is a *codec.Error carrying status, both with
// errors.Is against a status-only target and with StatusOf.
func requireStatus(t testing.TB, err error, status codec.Status) {
	t.Helper()
	require.Error(t, err)
	requireCodecError(t, err)
	require.ErrorIs(t, err, &codec.Error{Status: status})
	require.Equal(t, status, codec.StatusOf(err))
}

// kvPayload builds a KV-LIST payload with the package's own encoders.
func kvPayload(items ...kvItem) []byte {
	var b []byte
	for _, it := range items {
		b = codec.AppendKV(b, it.name, it.v)
	}
	return b
}

type kvItem struct {
	name string
	v    codec.Value
}

// frameBytes builds a whole frame (prefix included) around payload.
func frameBytes(t codec.FrameType, flags codec.Flags, sid, fid uint64, payload []byte) []byte {
	return codec.AppendFrame(nil, codec.Header{Type: t, Flags: flags, StreamID: sid, FrameID: fid}, payload)
}
