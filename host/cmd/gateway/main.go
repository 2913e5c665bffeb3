// Command gateway is the kratos-email-gateway host: see `gateway help`.
package main

import "github.com/kratos-email-gateway/kratos-email-gateway/host/cli"

func main() { cli.Main() }
