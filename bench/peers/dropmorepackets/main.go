// Command dropmorepackets is the benchmark agent on
// github.com/dropmorepackets/haproxy-go (package spop): message
// check-request, reads ip and path, sets txn score (int) and ok (bool).
package main

import (
	"context"

	"github.com/dropmorepackets/haproxy-go/pkg/encoding"
	"github.com/dropmorepackets/haproxy-go/spop"
	"github.com/spoe-forge/spoe-forge/bench/peers/internal/peer"
)

func handler(_ context.Context, w *encoding.ActionWriter, m *encoding.Message) {
	if string(m.NameBytes()) != "check-request" {
		return
	}
	var ip, path []byte
	k := encoding.AcquireKVEntry()
	defer encoding.ReleaseKVEntry(k)
	for m.KV.Next(k) {
		switch {
		case k.NameEquals("ip"):
			ip = k.ValueBytes()
		case k.NameEquals("path"):
			path = k.ValueBytes()
		}
	}
	// ValueBytes alias the frame, which lives until the handler returns.
	_ = w.SetInt64(encoding.VarScopeTransaction, "score", peer.Score(path))
	_ = w.SetBool(encoding.VarScopeTransaction, "ok", peer.OK(ip))
}

func main() {
	f := peer.Parse("dropmorepackets")
	peer.Run(f, func() error { return spop.ListenAndServe(f.Addr, spop.HandlerFunc(handler)) })
}
