package sdk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrInvalidArgument means the request or config is wrong and a retry of the
	// same call will fail the same way.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnavailable means a dependency (the SMTP server) failed in a way that
	// may pass: the caller should retry later.
	ErrUnavailable = errors.New("temporarily unavailable")
	// ErrRejected means the SMTP side failed for good: the server refused the
	// mail (a 5xx reply), or does not fit the config (a certificate that does
	// not verify, no TLS, STARTTLS or AUTH where the config expects it).
	ErrRejected = errors.New("rejected")
	// ErrNotConfigured means Configure has not succeeded yet.
	ErrNotConfigured = errors.New("plugin not configured")
	// ErrUnsupported means the plugin does not offer the optional
	// capability that was called (Renderer, Prober); on the wire it is gRPC
	// Unimplemented, which a plugin in another language answers for a
	// method it leaves out.
	ErrUnsupported = errors.New("not supported by this plugin")
)

// The sentinels cross the wire as gRPC status codes; everything else is Internal.
// A deadline is checked first: an SMTP stage that ran out of time is also
// "unavailable", but the caller answers a timeout differently (504).
var codeOf = []struct {
	err  error
	code codes.Code
}{
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrUnavailable, codes.Unavailable},
	{ErrRejected, codes.Aborted},
	{ErrNotConfigured, codes.FailedPrecondition},
	{ErrUnsupported, codes.Unimplemented},
	{context.Canceled, codes.Canceled},
}

// toStatus maps a plugin error to a gRPC status, keeping its message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return status.Error(c.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus maps a gRPC status back to an error that matches the sentinels
// with errors.Is. Transport failures (the plugin process died) are Unavailable.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, c := range codeOf {
		if st.Code() == c.code {
			return &remoteError{sentinel: c.err, msg: st.Message()}
		}
	}
	return fmt.Errorf("plugin: %s", st.Message())
}

// remoteError carries the plugin's message while matching the sentinel that
// its status code stands for. The message already names the sentinel, so
// Error does not repeat it.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }
