package sdk

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestPasswordMessageRoundTrip sends a PasswordMessage with every field set
// through the proto conversion: a field the conversion forgets comes back
// empty. The check that every field is set keeps the test honest when a
// field is added.
func TestPasswordMessageRoundTrip(t *testing.T) {
	t.Parallel()
	in := &PasswordMessage{
		Password:       "Tq8#Lw2@Pw-4711",
		ExpiresAt:      time.Date(2026, time.March, 1, 12, 30, 0, 0, time.UTC),
		LoginURL:       "https://auth.example.com/login",
		IdentityID:     "9f425a8d-7efc-4768-8f23-7647a74fdf13",
		IdentityTraits: json.RawMessage(`{"email":"jane@example.com"}`),
		RecoveryCode:   "482913",
		RecoveryURL:    "https://auth.example.com/self-service/recovery?flow=f&token=t",
	}
	v := reflect.ValueOf(in).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("the test message leaves %s empty; set it so the round trip checks it", v.Type().Field(i).Name)
		}
	}
	out, err := passwordFromProto(passwordToProto(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("after the conversion:\n got %+v\nwant %+v", out, in)
	}
	// A sender that does not know the new fields (an older host) sends
	// none: they arrive empty, as for an admin reset.
	pb := passwordToProto(in)
	pb.RecoveryCode, pb.RecoveryUrl = "", ""
	if out, err := passwordFromProto(pb); err != nil || out.RecoveryCode != "" || out.RecoveryURL != "" {
		t.Errorf("without Kratos's code and link: %+v, %v", out, err)
	}
}

// TestNoticeMessageRoundTrip does for NoticeMessage what
// TestPasswordMessageRoundTrip does for PasswordMessage, through
// SendMessageRequest and RenderRequest, the two ways a notice crosses.
func TestNoticeMessageRoundTrip(t *testing.T) {
	t.Parallel()
	in := &NoticeMessage{
		Kind:           NoticeResetVoid,
		At:             time.Date(2026, time.March, 1, 12, 30, 0, 0, time.UTC),
		IdentityID:     "9f425a8d-7efc-4768-8f23-7647a74fdf13",
		IdentityTraits: json.RawMessage(`{"email":"jane@example.com"}`),
		LoginURL:       "https://auth.example.com/login",
		SettingsURL:    "https://auth.example.com/settings",
	}
	v := reflect.ValueOf(in).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("the test notice leaves %s empty; set it so the round trip checks it", v.Type().Field(i).Name)
		}
	}
	send, err := sendFromProto(sendToProto(&SendMessageRequest{Recipient: "jane@example.com", Notice: in}))
	if err != nil {
		t.Fatal(err)
	}
	if send.Recipient != "jane@example.com" || send.Password != nil || send.Rendered != nil || !reflect.DeepEqual(send.Notice, in) {
		t.Errorf("SendMessageRequest after the conversion:\n got %+v (notice %+v)\nwant the notice %+v", send, send.Notice, in)
	}
	render, err := renderFromProto(renderToProto(&RenderRequest{Recipient: "jane@example.com", Notice: in}))
	if err != nil {
		t.Fatal(err)
	}
	if render.Recipient != "jane@example.com" || render.Password != nil || !reflect.DeepEqual(render.Notice, in) {
		t.Errorf("RenderRequest after the conversion:\n got %+v (notice %+v)\nwant the notice %+v", render, render.Notice, in)
	}
	// A time in another zone arrives as the same instant.
	zoned := *in
	zoned.At = in.At.In(time.FixedZone("CEST", 2*60*60))
	if out, err := noticeFromProto(noticeToProto(&zoned)); err != nil || !out.At.Equal(in.At) {
		t.Errorf("At in another zone = %v, %v; want %v", out.At, err, in.At)
	}
}

// A render request names exactly one mail; anything else is refused as the
// caller's mistake.
func TestRenderRequestFromProto(t *testing.T) {
	t.Parallel()
	password := &PasswordMessage{Password: "Tq8#Lw2@Pw-4711", ExpiresAt: time.Date(2026, time.March, 1, 12, 30, 0, 0, time.UTC)}
	notice := &NoticeMessage{Kind: NoticePasswordChanged, At: time.Date(2026, time.March, 1, 12, 30, 0, 0, time.UTC)}
	tests := []struct {
		name         string
		req          *RenderRequest
		wantErr      bool
		wantPassword bool
		wantNotice   bool
	}{
		{name: "password", req: &RenderRequest{Password: password}, wantPassword: true},
		{name: "notice", req: &RenderRequest{Notice: notice}, wantNotice: true},
		{name: "neither", req: &RenderRequest{}, wantErr: true},
		{name: "both", req: &RenderRequest{Password: password, Notice: notice}, wantErr: true},
		{name: "nil", req: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := renderFromProto(renderToProto(tt.req))
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("renderFromProto = %+v, %v; want ErrInvalidArgument", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.Password != nil) != tt.wantPassword || (got.Notice != nil) != tt.wantNotice {
				t.Errorf("renderFromProto = password %v, notice %v; want password %t, notice %t", got.Password, got.Notice, tt.wantPassword, tt.wantNotice)
			}
		})
	}
}

// A notice whose time does not parse is the sender's mistake.
func TestNoticeWithoutATimeIsRefused(t *testing.T) {
	t.Parallel()
	pb := noticeToProto(&NoticeMessage{Kind: NoticeResetVoid})
	pb.At = "yesterday"
	if _, err := noticeFromProto(pb); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("noticeFromProto(at: yesterday) = %v, want ErrInvalidArgument", err)
	}
	if _, err := noticeFromProto(nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("noticeFromProto(nil) = %v, want ErrInvalidArgument", err)
	}
}
