module github.com/spoe-forge/spoe-forge/bench

go 1.24.0
