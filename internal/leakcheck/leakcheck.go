// Package leakcheck is what the goroutine-leak checks of the tests share
// (go.uber.org/goleak): every test binary that serves an agent checks,
// once its tests are done, that no goroutine of ours is left.
package leakcheck

import "go.uber.org/goleak"

// IgnoreAnts returns the options that ignore the two goroutines of the
// default pool that ants starts when it is imported. spoe-forge never uses
// that pool (the dispatcher has its own), and they run for the life of the
// process: they are not ours to stop.
func IgnoreAnts() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	}
}

// VerifyTestMain runs the tests of m, then fails the binary if goroutines
// other than ants' (and those extra ignores) are left: goleak.VerifyTestMain
// with IgnoreAnts.
func VerifyTestMain(m goleak.TestingM, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append(IgnoreAnts(), extra...)...)
}
