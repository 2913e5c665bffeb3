package sdk

import (
	"encoding/json"
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
