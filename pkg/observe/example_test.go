package observe_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"github.com/spoe-forge/spoe-forge/pkg/spoetest"
)

// answers counts the NOTIFYs the agent answered, and those it answered
// with an error code. It embeds observe.Nop: the events it does not define
// (connections, frames, ...) do nothing, and an event added to Observer in
// a later release does nothing for it too, instead of breaking its build.
type answers struct {
	observe.Nop
	total, failed atomic.Int64
}

// Answered implements observe.Observer. The agent calls it from many
// goroutines, on its hot path: it must be safe for concurrent use, and
// fast.
func (a *answers) Answered(_ time.Duration, code int) {
	a.total.Add(1)
	if code != 0 {
		a.failed.Add(1)
	}
}

// An Observer of your own, with the one event it needs.
func Example() {
	obs := &answers{}
	a := agent.New(agent.WithObserver(obs))
	a.Message("check-user", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		if user, _ := m.String("user"); user == "mallory" {
			return errors.New("unknown user")
		}
		return nil
	})
	srv := spoetest.NewServer(a) // in production: a.Run("127.0.0.1:12345")
	defer srv.Close()
	c, err := srv.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, user := range []string{"alice", "mallory", "bob"} {
		if _, err := c.Notify(spoetest.NewMessage("check-user", spoetest.Str("user", user))); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Each event comes before its ACK leaves: the counts are complete.
	fmt.Printf("%d answered, %d failed\n", obs.total.Load(), obs.failed.Load())
	// Output: 3 answered, 1 failed
}
