// Command negasus is the benchmark agent on github.com/negasus/haproxy-spoe-go:
// message check-request, reads ip and path, sets txn score (int) and ok
// (bool).
package main

import (
	"net"

	"github.com/negasus/haproxy-spoe-go/action"
	"github.com/negasus/haproxy-spoe-go/agent"
	"github.com/negasus/haproxy-spoe-go/logger"
	"github.com/negasus/haproxy-spoe-go/request"
	"github.com/spoe-forge/spoe-forge/bench/peers/internal/peer"
)

func handler(req *request.Request) {
	m, err := req.Messages.GetByName("check-request")
	if err != nil {
		return
	}
	var ip net.IP
	if v, ok := m.KV.Get("ip"); ok {
		ip, _ = v.(net.IP)
	}
	var path string
	if v, ok := m.KV.Get("path"); ok {
		path, _ = v.(string)
	}
	req.Actions.SetVar(action.ScopeTransaction, "score", int(peer.Score([]byte(path))))
	req.Actions.SetVar(action.ScopeTransaction, "ok", ip.To4() != nil)
}

func main() {
	f := peer.Parse("negasus")
	peer.Run(f, func() error {
		l, err := net.Listen("tcp", f.Addr)
		if err != nil {
			return err
		}
		return agent.New(handler, logger.NewNop()).Serve(l)
	})
}
