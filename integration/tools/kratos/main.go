// Command kratos builds the real Ory Kratos server from the Go module proxy so
// the integration tests and the local stack run the same binary operators do.
package main

import "github.com/ory/kratos/cmd"

func main() { cmd.Execute() }
