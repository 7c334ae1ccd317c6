// Package main is an spoe-forge agent traced with OpenTelemetry: each SPOE
// message handled becomes a span, through middleware.Trace. It is a module
// of its own so that spoe-forge itself does not depend on OpenTelemetry.
package main

import (
	"context"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracer implements middleware.Tracer with an OpenTelemetry tracer: a span
// per message, named after it, with the NOTIFY's ids and engine as
// attributes, and the handler's error as the span's status.
type Tracer struct {
	T trace.Tracer
}

// Start starts the message's span and returns the context carrying it.
func (t Tracer) Start(ctx context.Context, m *agent.Message) context.Context {
	ctx, _ = t.T.Start(ctx, "spoe "+m.Name(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("spoe.message", m.Name()),
			attribute.Int64("spoe.stream_id", int64(m.StreamID())),
			attribute.Int64("spoe.frame_id", int64(m.FrameID())),
			attribute.String("spoe.engine_id", m.EngineID()),
		))
	return ctx
}

// End ends the span, recording the handler's error and duration.
func (t Tracer) End(ctx context.Context, m *agent.Message, took time.Duration, err error) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.Int64("spoe.handler_us", took.Microseconds()))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
