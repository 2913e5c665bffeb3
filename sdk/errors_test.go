package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorsSurviveTheWire(t *testing.T) {
	t.Parallel()
	for _, sentinel := range []error{ErrInvalidArgument, ErrUnavailable, ErrRejected, ErrNotConfigured, ErrUnsupported, context.DeadlineExceeded, context.Canceled} {
		t.Run(sentinel.Error(), func(t *testing.T) {
			t.Parallel()
			sent := fmt.Errorf("smtp rcpt_to: 550 no such user: %w", sentinel)
			got := fromStatus(toStatus(sent))
			if !errors.Is(got, sentinel) {
				t.Errorf("after the wire, %v does not match %v", got, sentinel)
			}
			if got.Error() != sent.Error() {
				t.Errorf("message = %q, want %q", got, sent)
			}
		})
	}
}

func TestUnknownErrorsAreInternal(t *testing.T) {
	t.Parallel()
	st, _ := status.FromError(toStatus(errors.New("boom")))
	if st.Code() != codes.Internal {
		t.Errorf("code = %s, want Internal", st.Code())
	}
	got := fromStatus(status.Error(codes.Internal, "boom"))
	for _, s := range []error{ErrInvalidArgument, ErrUnavailable, ErrRejected, ErrNotConfigured, ErrUnsupported} {
		if errors.Is(got, s) {
			t.Errorf("an internal error matches %v", s)
		}
	}
	if toStatus(nil) != nil || fromStatus(nil) != nil {
		t.Error("nil errors must stay nil")
	}
}

func TestConversionIsNilSafe(t *testing.T) {
	t.Parallel()
	if got := sendToProto(nil); got.GetRecipient() != "" || got.GetContent() != nil {
		t.Errorf("sendToProto(nil) = %v", got)
	}
	if _, err := sendFromProto(sendToProto(&SendMessageRequest{Recipient: "a@example.com"})); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a message without content = %v, want ErrInvalidArgument", err)
	}
}

// A plugin in another language that leaves a capability out answers gRPC
// Unimplemented (its generated base does): the host sees ErrUnsupported.
func TestUnimplementedIsUnsupported(t *testing.T) {
	t.Parallel()
	err := fromStatus(status.Error(codes.Unimplemented, "method Render not implemented"))
	if !errors.Is(err, ErrUnsupported) || err.Error() != "method Render not implemented" {
		t.Errorf("Unimplemented became %v, want ErrUnsupported with the plugin's message", err)
	}
}
