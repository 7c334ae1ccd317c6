module github.com/spoe-forge/spoe-forge

go 1.24.0
