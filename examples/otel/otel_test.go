package main

import (
	"context"
	"testing"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestSpansPerMessage(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	a := newAgent(Tracer{T: tp.Tracer("test")})
	a.Message("broken", func(ctx context.Context, m *agent.Message, act *agent.Actions) error { panic("on purpose") })
	srv := spoetest.NewServer(a)
	defer func() { require.NoError(t, srv.Close()) }()
	c, err := srv.Client()
	require.NoError(t, err)
	defer c.Close()

	_, err = c.Notify(spoetest.NewMessage("check-request", spoetest.Str("path", "/abc")))
	require.NoError(t, err)
	_, err = c.Notify(spoetest.NewMessage("broken"))
	require.NoError(t, err)

	spans := rec.Ended()
	require.Len(t, spans, 2)
	require.Equal(t, "spoe check-request", spans[0].Name())
	require.Contains(t, spans[0].Attributes(), attribute.String("spoe.message", "check-request"))
	require.Equal(t, codes.Unset, spans[0].Status().Code)
	require.Equal(t, "spoe broken", spans[1].Name())
	require.Equal(t, codes.Error, spans[1].Status().Code, "a panic ends its span with an error")
}
