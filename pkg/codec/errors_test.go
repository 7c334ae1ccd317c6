package codec_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// sentinels lists every exported sentinel with the status it must carry.
var sentinels = []struct {
	name   string
	err    *codec.Error
	status codec.Status
}{
	{"ErrTruncated", codec.ErrTruncated, codec.StatusInvalid},
	{"ErrVarintOverflow", codec.ErrVarintOverflow, codec.StatusInvalid},
	{"ErrFrameTooSmall", codec.ErrFrameTooSmall, codec.StatusInvalid},
	{"ErrFrameTooBig", codec.ErrFrameTooBig, codec.StatusFrameTooBig},
	{"ErrUnknownDataType", codec.ErrUnknownDataType, codec.StatusInvalid},
	{"ErrBadKVType", codec.ErrBadKVType, codec.StatusInvalid},
	{"ErrBadIDs", codec.ErrBadIDs, codec.StatusInvalid},
	{"ErrUnexpectedFrame", codec.ErrUnexpectedFrame, codec.StatusInvalid},
	{"ErrTrailingData", codec.ErrTrailingData, codec.StatusInvalid},
	{"ErrBadAction", codec.ErrBadAction, codec.StatusInvalid},
	{"ErrNoVersion", codec.ErrNoVersion, codec.StatusNoVersion},
	{"ErrNoSupportedVersions", codec.ErrNoSupportedVersions, codec.StatusBadVersion},
	{"ErrUnsupportedVersion", codec.ErrUnsupportedVersion, codec.StatusBadVersion},
	{"ErrNoFrameSize", codec.ErrNoFrameSize, codec.StatusNoFrameSize},
	{"ErrBadFrameSize", codec.ErrBadFrameSize, codec.StatusBadFrameSize},
	{"ErrNoCapabilities", codec.ErrNoCapabilities, codec.StatusNoCapabilities},
	{"ErrFragmentation", codec.ErrFragmentation, codec.StatusFragNotSupported},
	{"ErrInterlaced", codec.ErrInterlaced, codec.StatusInterlaced},
	{"ErrVarNameTooLong", codec.ErrVarNameTooLong, codec.StatusInvalid},
	{"ErrVarNameEmpty", codec.ErrVarNameEmpty, codec.StatusInvalid},
	{"ErrBadScope", codec.ErrBadScope, codec.StatusInvalid},
	{"ErrTooManyArgs", codec.ErrTooManyArgs, codec.StatusInvalid},
	{"ErrValueTooLong", codec.ErrValueTooLong, codec.StatusInvalid},
}

func TestSentinels(t *testing.T) {
	for _, s := range sentinels {
		t.Run(s.name, func(t *testing.T) {
			require.Equal(t, s.status, s.err.Status)
			require.NotEmpty(t, s.err.Reason, "a sentinel carries a reason")
			require.Equal(t, "spop: "+s.status.String()+": "+s.err.Reason, s.err.Error())

			wrapped := fmt.Errorf("arg 3 of %q: %w", "check-request", s.err)
			twice := fmt.Errorf("conn: %w", wrapped)
			for _, err := range []error{s.err, wrapped, twice} {
				// By identity.
				require.ErrorIs(t, err, s.err)
				// By status only.
				require.ErrorIs(t, err, &codec.Error{Status: s.status})
				require.NotErrorIs(t, err, &codec.Error{Status: s.status + 1})
				// A target with a reason is compared by identity only, even
				// with the same fields.
				require.NotErrorIs(t, err, &codec.Error{Status: s.status, Reason: s.err.Reason})
				// errors.As finds the *Error and its status.
				var ce *codec.Error
				require.ErrorAs(t, err, &ce)
				require.Same(t, s.err, ce)
				require.Equal(t, s.status, codec.StatusOf(err))
			}
			// Distinct sentinels do not match each other, even with the
			// same status.
			for _, o := range sentinels {
				if o.err != s.err {
					require.NotErrorIs(t, s.err, o.err, "%s is not %s", s.name, o.name)
				}
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	t.Run("status-only Error", func(t *testing.T) {
		e := &codec.Error{Status: codec.StatusFrameTooBig}
		require.Equal(t, "spop: frame is too big", e.Error())
		require.ErrorIs(t, e, &codec.Error{Status: codec.StatusFrameTooBig})
		require.NotErrorIs(t, e, codec.ErrFrameTooBig, "a status-only error is not the sentinel")
		require.Equal(t, codec.StatusFrameTooBig, codec.StatusOf(e))
	})
	t.Run("agent code", func(t *testing.T) {
		e := &codec.Error{Status: 142, Reason: "backend down"}
		require.Equal(t, "spop: status 142: backend down", e.Error())
		require.Equal(t, codec.Status(142), codec.StatusOf(fmt.Errorf("x: %w", e)))
		require.ErrorIs(t, e, &codec.Error{Status: 142})
	})
	t.Run("Is with a non-Error target", func(t *testing.T) {
		require.False(t, codec.ErrTruncated.Is(io.EOF))
		require.False(t, codec.ErrTruncated.Is(nil))
		require.NotErrorIs(t, codec.ErrTruncated, io.ErrUnexpectedEOF)
	})
}

func TestStatusOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want codec.Status
	}{
		{"nil", nil, codec.StatusNormal},
		{"io.EOF", io.EOF, codec.StatusNormal},
		{"wrapped io.EOF", fmt.Errorf("read: %w", io.EOF), codec.StatusNormal},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF, codec.StatusIO},
		{"wrapped io.ErrUnexpectedEOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), codec.StatusIO},
		{"os.ErrDeadlineExceeded", os.ErrDeadlineExceeded, codec.StatusTimeout},
		{"wrapped deadline", &os.PathError{Op: "read", Path: "x", Err: os.ErrDeadlineExceeded}, codec.StatusTimeout},
		{"sentinel", codec.ErrFrameTooBig, codec.StatusFrameTooBig},
		{"wrapped *Error", fmt.Errorf("frame 3: %w", codec.ErrBadFrameSize), codec.StatusBadFrameSize},
		{"status-only *Error", &codec.Error{Status: codec.StatusResource}, codec.StatusResource},
		{"*Error and io.EOF: the *Error wins", fmt.Errorf("%w at %w", codec.ErrTruncated, io.EOF), codec.StatusInvalid},
		{"joined io.EOF and *Error", errors.Join(io.EOF, codec.ErrFragmentation), codec.StatusFragNotSupported},
		{"other", errors.New("boom"), codec.StatusUnknown},
		{"context.Canceled", context.Canceled, codec.StatusUnknown},
		{"os.ErrClosed", os.ErrClosed, codec.StatusUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, codec.StatusOf(tc.err))
		})
	}
}

func TestStatusString(t *testing.T) {
	for _, st := range allStatuses {
		t.Run(fmt.Sprint(uint32(st.s)), func(t *testing.T) {
			require.Equal(t, st.msg, st.s.String())
		})
	}
	for _, s := range []codec.Status{14, 98, 100, 256, 1<<32 - 1} {
		t.Run(fmt.Sprint(uint32(s)), func(t *testing.T) {
			require.Equal(t, fmt.Sprintf("status %d", uint32(s)), s.String())
		})
	}
	require.Equal(t, codec.StatusNormal, codec.Status(0), "the zero Status is normal")
}

func TestFrameTypeString(t *testing.T) {
	cases := map[codec.FrameType]string{
		0:   "UNSET",
		1:   "HAPROXY-HELLO",
		2:   "HAPROXY-DISCONNECT",
		3:   "NOTIFY",
		101: "AGENT-HELLO",
		102: "AGENT-DISCONNECT",
		103: "ACK",
		4:   "FRAME(4)",
		99:  "FRAME(99)",
		255: "FRAME(255)",
	}
	for ft, want := range cases {
		t.Run(want, func(t *testing.T) {
			require.Equal(t, want, ft.String())
		})
	}
}
