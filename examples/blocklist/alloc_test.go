//go:build !race

package main

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestList_ContainsAllocs: a lookup allocates nothing.
func TestList_ContainsAllocs(t *testing.T) {
	l, err := parse(testList)
	require.NoError(t, err)
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:10.1.2.3")}
	require.Zero(t, testing.AllocsPerRun(100, func() {
		for _, ip := range ips {
			l.Contains(ip)
		}
	}))
}
