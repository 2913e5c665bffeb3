// Package integration drives whole user journeys against a real Kratos
// (v1.3.1, or v26.2.0 with KRATOS_VERSION=v26.2.0), the real gateway host
// and plugin binaries, and Mailpit, all on loopback. Run it with `make test`
// (which builds both Kratos versions and Mailpit into .cache/ first and runs
// the suite on each) or `go test ./...` from this folder once they are built.
package integration
