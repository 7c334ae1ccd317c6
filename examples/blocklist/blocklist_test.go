package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const testList = `
# A comment line, then networks of every kind.
192.0.2.0/24          # TEST-NET-1
198.51.100.7          # one IPv4 address
203.0.113.130/25      # host bits are ignored: 203.0.113.128/25
10.0.0.0/8, 172.16.0.0/12
2001:db8:bad::/48
2001:db8::dead        # one IPv6 address
::ffff:100.64.0.0/106 # IPv4-mapped: 100.64.0.0/10
`

func TestList_Contains(t *testing.T) {
	l, err := parse(testList)
	require.NoError(t, err)
	require.Equal(t, 8, l.Len())
	tests := []struct {
		ip   string
		want bool
	}{
		{"192.0.2.0", true},
		{"192.0.2.255", true},
		{"192.0.3.0", false},
		{"198.51.100.7", true},
		{"198.51.100.8", false},
		{"203.0.113.128", true},
		{"203.0.113.255", true},
		{"203.0.113.127", false},
		{"10.255.255.255", true},
		{"172.31.0.1", true},
		{"172.32.0.1", false},
		{"100.64.0.1", true},
		{"100.128.0.1", false},
		{"::ffff:192.0.2.9", true}, // IPv4-mapped client address
		{"::ffff:192.0.3.9", false},
		{"2001:db8:bad::1", true},
		{"2001:db8:bad:ffff:ffff:ffff:ffff:ffff", true},
		{"2001:db8:bae::1", false},
		{"2001:db8::dead", true},
		{"2001:db8::beef", false},
		{"::1", false},
		{"127.0.0.1", false},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			require.Equal(t, tt.want, l.Contains(netip.MustParseAddr(tt.ip)))
		})
	}
	t.Run("empty list", func(t *testing.T) {
		empty, err := parse("# nothing\n\n")
		require.NoError(t, err)
		require.Equal(t, 0, empty.Len())
		require.False(t, empty.Contains(netip.MustParseAddr("192.0.2.1")))
	})
	t.Run("zoned address, listed network", func(t *testing.T) {
		l, err := parse("fe80::/10")
		require.NoError(t, err)
		require.True(t, l.Contains(netip.MustParseAddr("fe80::1%eth0")))
	})
	t.Run("everything", func(t *testing.T) {
		l, err := parse("0.0.0.0/0 ::/0")
		require.NoError(t, err)
		require.True(t, l.Contains(netip.MustParseAddr("8.8.8.8")))
		require.True(t, l.Contains(netip.MustParseAddr("2001:4860::8888")))
	})
}

func TestParse_Errors(t *testing.T) {
	for _, tt := range []struct{ name, text, want string }{
		{"not an address", "192.0.2.0/24\nexample.com\n", "list:2: "},
		{"bad prefix", "192.0.2.0/33", "list:1: "},
		{"zone", "fe80::1%eth0", "zones are not allowed"},
		{"short mapped prefix", "::ffff:0.0.0.0/95", "at least /96"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.text)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLoad(t *testing.T) {
	file := filepath.Join(t.TempDir(), "blocklist.txt")
	require.NoError(t, os.WriteFile(file, []byte("192.0.2.0/24\n"), 0o600))
	l, err := load(file, "2001:db8::/32,198.51.100.1")
	require.NoError(t, err)
	require.Equal(t, 3, l.Len())
	for _, ip := range []string{"192.0.2.1", "2001:db8::1", "198.51.100.1"} {
		require.True(t, l.Contains(netip.MustParseAddr(ip)), ip)
	}
	_, err = load(file+".missing", "")
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = load("", "192.0.2.0/24,nope")
	require.ErrorContains(t, err, "-block:1: ")
}
