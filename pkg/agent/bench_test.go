package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// checkRequest reads two args and sets two variables: the shape of the
// allocation test and the benchmarks.
func checkRequest(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	ip, _ := m.IP("ip")
	path, _ := m.Bytes("path")
	act.SetBool(agent.ScopeTransaction, "allowed", ip.IsLoopback())
	act.SetInt(agent.ScopeTransaction, "score", int64(len(path)))
	return nil
}

// deriveCheckRequest is checkRequest written as handlers that call a
// service do it: with a context derived from the handler's.
func deriveCheckRequest(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	c2, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	return checkRequest(c2, m, act)
}

// BenchmarkPipelined drives the whole agent over loopback TCP: conns
// connections, each keeping window NOTIFYs in flight (the check-request shape
// of cmd/example), and reports NOTIFY/s and allocations per NOTIFY, for a
// handler that leaves its context alone ("plain") and for one that derives
// a context with a timeout ("derive"), to show the price of the latter.
func BenchmarkPipelined(b *testing.B) {
	for _, h := range []struct {
		name string
		fn   agent.HandlerFunc
	}{{"plain", checkRequest}, {"derive", deriveCheckRequest}} {
		for _, cw := range [][2]int{{1, 1}, {1, 64}, {4, 16}, {16, 64}} {
			b.Run(fmt.Sprintf("handler=%s/conns=%d/window=%d", h.name, cw[0], cw[1]), func(b *testing.B) {
				benchPipelined(b, h.fn, cw[0], cw[1])
			})
		}
	}
}

func benchPipelined(b *testing.B, h agent.HandlerFunc, conns, window int) {
	a := agent.New(agent.WithMaxInFlight(window))
	a.Message("check-request", h)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = a.Serve(l) }()
	defer func() { _ = a.Close() }()
	frame := spoptest.NotifyFrame(7, 1, spoptest.Msg{Name: "check-request", Args: []codec.Arg{
		spoptest.A("ip", codec.Addr(netip.MustParseAddr("192.0.2.1"))),
		spoptest.A("path", codec.String("/some/path/of/thirty/bytes/xx")),
		spoptest.A("ua", codec.String("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")),
		spoptest.A("host", codec.String("www.example.com")),
		spoptest.A("port", codec.Int64(8080)),
	}})
	clients := make([]*spoptest.Client, conns)
	for i := range clients {
		clients[i] = spoptest.Dial(b, l.Addr().String())
		clients[i].Hello("pipelining", 16380)
		_ = clients[i].NC.SetDeadline(time.Time{}) // a benchmark may run longer than spoptest.Timeout
	}
	per := b.N/conns + 1
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func(nc net.Conn) {
			defer wg.Done()
			burst := make([]byte, 0, len(frame)*window)
			for range window {
				burst = append(burst, frame...)
			}
			var hdr [4]byte
			ack := make([]byte, 256)
			br := bufio.NewReaderSize(nc, 64<<10)
			sent, got, owed := 0, 0, 0
			// Fill the window, then, like HAProxy, send one more NOTIFY for
			// every ACK read, in one write per batch of ACKs read together.
			n := min(window, per)
			if _, err := nc.Write(burst[:n*len(frame)]); err != nil {
				panic(err)
			}
			sent += n
			for got < per {
				if _, err := io.ReadFull(br, hdr[:]); err != nil {
					panic(fmt.Sprint("got ", got, " sent ", sent, " per ", per, ": ", err))
				}
				l := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
				if _, err := io.ReadFull(br, ack[:l]); err != nil {
					panic(err)
				}
				got++
				owed = min(owed+1, per-sent)
				if owed > 0 && br.Buffered() == 0 {
					if _, err := nc.Write(burst[:owed*len(frame)]); err != nil {
						panic(err)
					}
					sent += owed
					owed = 0
				}
			}
		}(c.NC)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(per*conns)/b.Elapsed().Seconds(), "NOTIFY/s")
}
