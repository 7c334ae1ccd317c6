// Command spoeforge is the benchmark agent on spoe-forge (this repository):
// message check-request, reads ip and path, sets txn score (int) and ok
// (bool).
package main

import (
	"context"
	"net"

	"github.com/spoe-forge/spoe-forge/bench/peers/internal/peer"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
)

func main() {
	f := peer.Parse("spoeforge")
	a := agent.New()
	a.Message("check-request", func(_ context.Context, m *agent.Message, act *agent.Actions) error {
		ip, _ := m.IP("ip")
		path, _ := m.Bytes("path")
		act.SetInt(agent.ScopeTransaction, "score", peer.Score(path))
		act.SetBool(agent.ScopeTransaction, "ok", ip.Is4())
		return nil
	})
	peer.Run(f, func() error {
		l, err := net.Listen("tcp", f.Addr)
		if err != nil {
			return err
		}
		return a.Serve(l)
	})
	_ = a.Close()
}
