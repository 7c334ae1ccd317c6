package spoetest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
)

// TestHeaders: a block built by spoetest.Headers reaches a handler through
// Message.Headers, which refuses what is not a STRING or BINARY argument.
func TestHeaders(t *testing.T) {
	type seen struct {
		ok     bool
		auth   string
		count  int
		err    error
		isNull bool
	}
	handle := func(got *seen) agent.HandlerFunc {
		return func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
			h, ok := m.Headers("headers")
			got.ok, got.isNull = ok, m.IsNull("headers")
			if ok {
				v, _ := h.Get("authorization")
				got.auth, got.count, got.err = string(v), h.Count(""), h.Validate()
			}
			return nil
		}
	}
	tests := []struct {
		name string
		args []agent.Arg
		want seen
	}{
		{"block", []agent.Arg{spoetest.Headers("headers", "host", "a", "authorization", "Bearer t", "authorization", "Basic b")}, seen{ok: true, auth: "Bearer t", count: 3}},
		{"empty block", []agent.Arg{spoetest.Headers("headers")}, seen{ok: true}},
		{"NULL, as when HAProxy cannot fetch them", []agent.Arg{spoetest.Null("headers")}, seen{isNull: true}},
		{"missing", nil, seen{}},
		{"an integer", []agent.Arg{spoetest.Int("headers", 3)}, seen{}},
		{"malformed", []agent.Arg{spoetest.Bin("headers", []byte{1, 'a'})}, seen{ok: true, err: &codec.HeadersError{Offset: 2, Reason: "the block ends after a header name, without its value", Err: codec.ErrTruncated}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got seen
			spoetest.Run(t, handle(&got), spoetest.NewMessage("m", tt.args...))
			require.Equal(t, tt.want, got)
		})
	}

	v, ok := spoetest.Headers("h", "x", "1").Value.Bytes()
	require.True(t, ok)
	require.Equal(t, []byte{1, 'x', 1, '1', 0, 0}, v)
	require.PanicsWithValue(t, `spoetest.Headers("h"): 1 strings; want name, value pairs`, func() {
		spoetest.Headers("h", strings.Fields("x")...) // built at run time: staticcheck rejects an odd literal list
	})
	require.PanicsWithValue(t, `spoetest.Headers("h"): header 1 has an empty name, which would end the block`, func() { spoetest.Headers("h", "x", "1", "", "2") })
}
