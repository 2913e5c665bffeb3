// Package sdk is the contract between the kratos-email-gateway host and an
// email gateway plugin: implement Gateway, call Serve from main, and run
// sdktest.Run against the implementation to prove it speaks the contract.
//
// Hosts launch a plugin binary with Launch and use the returned Gateway like a
// local value; every call crosses a go-plugin gRPC connection secured with
// AutoMTLS. The wire format is published as proto/gateway.proto for authors
// in other languages.
package sdk
