package metrics

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestModuleVersion(t *testing.T) {
	dep := func(path, version string, replace *debug.Module) *debug.Module {
		return &debug.Module{Path: path, Version: version, Replace: replace}
	}
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "unknown"},
		{"the main module, from a checkout", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}}, "(devel)"},
		{"the main module, no version", &debug.BuildInfo{Main: debug.Module{Path: modulePath}}, "(devel)"},
		{"the main module, tagged", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v0.4.0"}}, "v0.4.0"},
		{"a dependency", &debug.BuildInfo{Main: debug.Module{Path: "example.com/agent"},
			Deps: []*debug.Module{dep("go.uber.org/zap", "v1.28.0", nil), dep(modulePath, "v0.3.1", nil)}}, "v0.3.1"},
		{"replaced by a directory", &debug.BuildInfo{Main: debug.Module{Path: "example.com/agent"},
			Deps: []*debug.Module{dep(modulePath, "v0.3.1", &debug.Module{Path: "../spoe-forge"})}}, "(devel)"},
		{"replaced by a fork's version", &debug.BuildInfo{Main: debug.Module{Path: "example.com/agent"},
			Deps: []*debug.Module{dep(modulePath, "v0.3.1", &debug.Module{Path: "example.com/fork", Version: "v0.3.2"})}}, "v0.3.2"},
		{"not built in", &debug.BuildInfo{Main: debug.Module{Path: "example.com/agent"},
			Deps: []*debug.Module{dep("go.uber.org/zap", "v1.28.0", nil)}}, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, moduleVersion(tc.info))
		})
	}
}
