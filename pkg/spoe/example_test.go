package spoe_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/spoe-forge/spoe-forge/pkg/spoe"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
)

var blocked = netip.MustParsePrefix("192.0.2.0/24")

// checkRequest is a handler: it reads two arguments and sets two variables.
func checkRequest(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
	ip, _ := m.IP("ip")
	path, _ := m.String("path")
	act.SetBool(spoe.ScopeTransaction, "blocked", blocked.Contains(ip))
	act.SetInt(spoe.ScopeTransaction, "score", int64(len(path)))
	return nil
}

// A handler, run in process with pkg/spoetest as the agent would run it.
func Example() {
	res, err := spoetest.Call(context.Background(), checkRequest, spoetest.NewMessage("check-request",
		spoetest.IP("ip", "192.0.2.7"), spoetest.Str("path", "/admin")))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Actions)
	// Output: [set-var txn.blocked=bool:true set-var txn.score=int64:6]
}

// Headers reads a header of the block HAProxy sends for req.hdrs_bin,
// without allocating.
func ExampleMessage_Headers() {
	res, _ := spoetest.Call(context.Background(), func(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
		h, _ := m.Headers("headers")
		if auth, ok := h.Get("Authorization"); ok {
			act.SetString(spoe.ScopeTransaction, "auth", string(auth))
		}
		return nil
	}, spoetest.NewMessage("check-request", spoetest.Headers("headers", "authorization", "Bearer t0k3n")))
	fmt.Println(res.Actions)
	// Output: [set-var txn.auth=string:Bearer t0k3n]
}

// A middleware that counts the messages its handlers fail.
func ExampleMiddleware() {
	failures := 0
	count := func(next spoe.Handler) spoe.Handler {
		return spoe.HandlerFunc(func(ctx context.Context, m *spoe.Message, a *spoe.Actions) error {
			err := next.HandleMessage(ctx, m, a)
			if err != nil {
				failures++
			}
			return err
		})
	}
	h := spoe.Chain(spoe.HandlerFunc(func(context.Context, *spoe.Message, *spoe.Actions) error {
		return fmt.Errorf("no")
	}), count)
	_, _ = spoetest.Call(context.Background(), h.HandleMessage, spoetest.NewMessage("m"))
	fmt.Println(failures)
	// Output: 1
}
