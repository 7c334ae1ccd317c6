package bufpool

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClasses(t *testing.T) {
	for _, tc := range []struct{ size, class int }{
		{0, 0}, {1, 0}, {1024, 0}, {1025, 1}, {2048, 1}, {2049, 2}, {4096, 2}, {16384, 4}, {16388, 5}, {65536, 6}, {65540, 7}, {131072, 7}, {131073, -1},
	} {
		require.Equal(t, tc.class, classOf(tc.size), "size %d", tc.size)
	}
}

func TestGetReleaseBalance(t *testing.T) {
	var p Pool
	for _, size := range []int{10, 5000, 16388, 200000} {
		b := p.Get(size)
		require.GreaterOrEqual(t, cap(b.B), size)
		require.Zero(t, len(b.B))
		b.Retain()
		b.Release()
		require.EqualValues(t, 1, p.Outstanding())
		b.Release()
		require.EqualValues(t, 0, p.Outstanding())
	}
	b := p.Get(1)
	b.Release()
	require.Panics(t, func() { b.Release() })
}
