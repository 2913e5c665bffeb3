// Command hydra builds the real Ory Hydra OAuth2 server from the Go module
// proxy so the integration tests can fetch, introspect and revoke OAuth2
// access tokens (SMTP AUTH XOAUTH2) against the binary operators run.
package main

import "github.com/ory/hydra/v2/cmd"

func main() { cmd.Execute() }
