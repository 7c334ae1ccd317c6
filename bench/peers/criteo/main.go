// Command criteo is the benchmark agent on github.com/criteo/haproxy-spoe-go:
// message check-request, reads ip and path, sets txn score (int) and ok
// (bool).
package main

import (
	"net"
	"time"

	spoe "github.com/criteo/haproxy-spoe-go"
	"github.com/sirupsen/logrus"
	"github.com/spoe-forge/spoe-forge/bench/peers/internal/peer"
)

func handler(msgs *spoe.MessageIterator) ([]spoe.Action, error) {
	var actions []spoe.Action
	for msgs.Next() {
		msg := msgs.Message
		if msg.Name != "check-request" {
			continue
		}
		var ip net.IP
		var path string
		for msg.Args.Next() {
			switch arg := msg.Args.Arg; arg.Name {
			case "ip":
				ip, _ = arg.Value.(net.IP)
			case "path":
				path, _ = arg.Value.(string)
			}
		}
		actions = append(actions,
			spoe.ActionSetVar{Name: "score", Scope: spoe.VarScopeTransaction, Value: int(peer.Score([]byte(path)))},
			spoe.ActionSetVar{Name: "ok", Scope: spoe.VarScopeTransaction, Value: ip.To4() != nil},
		)
	}
	return actions, nil
}

func main() {
	f := peer.Parse("criteo")
	logrus.SetLevel(logrus.ErrorLevel)
	// The library's defaults (1 s read timeout, 30 s idle) close idle
	// connections; make them long enough for a benchmark's pauses.
	a := spoe.NewWithConfig(handler, spoe.Config{
		ReadTimeout:  time.Minute,
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  time.Minute,
	})
	peer.Run(f, func() error { return a.ListenAndServe(f.Addr) })
}
