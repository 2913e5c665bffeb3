// Package sdk is the contract between the kratos-email-gateway host and a
// gateway plugin: implement Gateway (the core every channel implements:
// Configure, IssuePassword, SendMessage, Health) and any optional capability
// the plugin offers (Renderer, Prober), call Serve from main, and run
// sdktest.Run against the implementation to prove it speaks the contract.
//
// Hosts launch a plugin binary with Launch and use the returned Client, a
// Remote, like a local value; every call crosses a go-plugin gRPC connection secured with
// AutoMTLS. A capability the plugin lacks answers ErrUnsupported (gRPC
// Unimplemented on the wire), so a host discovers it by calling. The wire
// format, with the handshake and the status codes each method answers, is
// published as proto/gateway.proto for authors in other languages.
package sdk
