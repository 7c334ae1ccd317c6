package main

import (
	"context"
	"flag"
	"log"
	"os"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/middleware"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:12345", "listen address")
	flag.Parse()

	// Spans go to standard output here; use an OTLP exporter in production.
	exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
	if err != nil {
		log.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	a := newAgent(Tracer{T: tp.Tracer("spoe-forge")})
	if err := a.Run(*addr); err != nil {
		log.Fatal(err)
	}
}

// newAgent builds the traced agent: one handler, checkRequest.
func newAgent(t Tracer) *agent.Agent {
	a := agent.New()
	a.Use(middleware.Trace(t), middleware.Recover())
	a.Message("check-request", checkRequest)
	return a
}

func checkRequest(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	path, _ := m.String("path")
	act.SetInt(agent.ScopeTransaction, "score", int64(len(path)))
	return nil
}
