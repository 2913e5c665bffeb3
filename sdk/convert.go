package sdk

import (
	"fmt"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/pb"
)

// The generated types stay behind these nil-safe functions: they are the
// only place that knows both shapes.

func passwordToProto(p *PasswordMessage) *pb.PasswordMessage {
	if p == nil {
		return nil
	}
	return &pb.PasswordMessage{
		Password:           p.Password,
		ExpiresAt:          p.ExpiresAt.UTC().Format(time.RFC3339),
		LoginUrl:           p.LoginURL,
		IdentityId:         p.IdentityID,
		IdentityTraitsJson: p.IdentityTraits,
		RecoveryCode:       p.RecoveryCode,
		RecoveryUrl:        p.RecoveryURL,
	}
}

func passwordFromProto(p *pb.PasswordMessage) (*PasswordMessage, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: password message missing", ErrInvalidArgument)
	}
	exp, err := time.Parse(time.RFC3339, p.GetExpiresAt())
	if err != nil {
		return nil, fmt.Errorf("%w: password message expires_at: %v", ErrInvalidArgument, err)
	}
	return &PasswordMessage{
		Password:       p.GetPassword(),
		ExpiresAt:      exp,
		LoginURL:       p.GetLoginUrl(),
		IdentityID:     p.GetIdentityId(),
		IdentityTraits: p.GetIdentityTraitsJson(),
		RecoveryCode:   p.GetRecoveryCode(),
		RecoveryURL:    p.GetRecoveryUrl(),
	}, nil
}

func noticeToProto(n *NoticeMessage) *pb.NoticeMessage {
	if n == nil {
		return nil
	}
	return &pb.NoticeMessage{
		Kind:               n.Kind,
		At:                 n.At.UTC().Format(time.RFC3339),
		IdentityId:         n.IdentityID,
		IdentityTraitsJson: n.IdentityTraits,
		LoginUrl:           n.LoginURL,
		SettingsUrl:        n.SettingsURL,
	}
}

func noticeFromProto(n *pb.NoticeMessage) (*NoticeMessage, error) {
	if n == nil {
		return nil, fmt.Errorf("%w: notice missing", ErrInvalidArgument)
	}
	at, err := time.Parse(time.RFC3339, n.GetAt())
	if err != nil {
		return nil, fmt.Errorf("%w: notice at: %v", ErrInvalidArgument, err)
	}
	return &NoticeMessage{
		Kind:           n.GetKind(),
		At:             at,
		IdentityID:     n.GetIdentityId(),
		IdentityTraits: n.GetIdentityTraitsJson(),
		LoginURL:       n.GetLoginUrl(),
		SettingsURL:    n.GetSettingsUrl(),
	}, nil
}

func renderToProto(r *RenderRequest) *pb.RenderRequest {
	if r == nil {
		return &pb.RenderRequest{}
	}
	return &pb.RenderRequest{Recipient: r.Recipient, Password: passwordToProto(r.Password), Notice: noticeToProto(r.Notice)}
}

// renderFromProto reads a render request: exactly one of password and
// notice.
func renderFromProto(r *pb.RenderRequest) (*RenderRequest, error) {
	out := &RenderRequest{Recipient: r.GetRecipient()}
	var err error
	switch {
	case r.GetPassword() != nil && r.GetNotice() != nil:
		return nil, fmt.Errorf("%w: render request has both a password message and a notice: set one", ErrInvalidArgument)
	case r.GetNotice() != nil:
		out.Notice, err = noticeFromProto(r.GetNotice())
	case r.GetPassword() != nil:
		out.Password, err = passwordFromProto(r.GetPassword())
	default:
		return nil, fmt.Errorf("%w: render request has neither a password message nor a notice", ErrInvalidArgument)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func stepsToProto(steps []SMTPStep) []*pb.SmtpStep {
	out := make([]*pb.SmtpStep, 0, len(steps))
	for _, s := range steps {
		out = append(out, &pb.SmtpStep{Stage: s.Stage, Detail: s.Detail, DurationMicros: s.Duration.Microseconds(), Error: s.Err})
	}
	return out
}

func stepsFromProto(steps []*pb.SmtpStep) []SMTPStep {
	var out []SMTPStep
	for _, s := range steps {
		out = append(out, SMTPStep{Stage: s.GetStage(), Detail: s.GetDetail(), Duration: time.Duration(s.GetDurationMicros()) * time.Microsecond, Err: s.GetError()})
	}
	return out
}

func sendToProto(r *SendMessageRequest) *pb.SendMessageRequest {
	if r == nil {
		return &pb.SendMessageRequest{}
	}
	out := &pb.SendMessageRequest{Recipient: r.Recipient}
	switch {
	case r.Password != nil:
		out.Content = &pb.SendMessageRequest_Password{Password: passwordToProto(r.Password)}
	case r.Notice != nil:
		out.Content = &pb.SendMessageRequest_Notice{Notice: noticeToProto(r.Notice)}
	case r.Rendered != nil:
		out.Content = &pb.SendMessageRequest_Rendered{Rendered: &pb.RenderedMessage{
			Subject:  r.Rendered.Subject,
			TextBody: r.Rendered.TextBody,
			HtmlBody: r.Rendered.HTMLBody,
		}}
	}
	return out
}

func sendFromProto(r *pb.SendMessageRequest) (*SendMessageRequest, error) {
	out := &SendMessageRequest{Recipient: r.GetRecipient()}
	switch c := r.GetContent().(type) {
	case *pb.SendMessageRequest_Password:
		p, err := passwordFromProto(c.Password)
		if err != nil {
			return nil, err
		}
		out.Password = p
	case *pb.SendMessageRequest_Notice:
		n, err := noticeFromProto(c.Notice)
		if err != nil {
			return nil, err
		}
		out.Notice = n
	case *pb.SendMessageRequest_Rendered:
		out.Rendered = &RenderedMessage{
			Subject:  c.Rendered.GetSubject(),
			TextBody: c.Rendered.GetTextBody(),
			HTMLBody: c.Rendered.GetHtmlBody(),
		}
	default:
		return nil, fmt.Errorf("%w: message has no content: set rendered, password or notice", ErrInvalidArgument)
	}
	return out, nil
}
