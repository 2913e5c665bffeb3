// Package integration drives whole user journeys against the real Kratos
// v1.3.1, the real gateway host and plugin binaries, and Mailpit, all on
// loopback. Run it with `make test` (which builds Kratos and Mailpit into
// .cache/ first) or `go test ./...` from this folder once they are built.
package integration
