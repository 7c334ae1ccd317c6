package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

type myCtx struct{ context.Context }

func TestReproDerivedCrash(t *testing.T) {
	a := agent.New()
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		c2, cancel := context.WithTimeout(myCtx{ctx}, time.Second)
		defer cancel()
		go func() { time.Sleep(time.Millisecond); _ = c2.Err(); _ = ctx.Value("k"); _ = ctx.Err() }()
		return nil
	})
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	for i := range 5000 {
		c.Notify(uint64(i+1), 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("x", codec.Int64(1))}})
		c.ReadAck()
	}
}
