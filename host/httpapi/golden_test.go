package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Golden tests: what each Kratos version really sends (testdata/kratos-<version>/,
// captured by integration/samples_test.go from a real server wired with
// configs/kratos; see testdata/README.md), read with the gateway's own
// types and reader, pinning every field the gateway uses. One test per
// wire format, one subtest per version.

// readSample reads a capture as the handlers read a request body.
func readSample(t *testing.T, version, file string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "kratos-"+version, file))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(raw))
	if status, err := readJSON(httptest.NewRecorder(), r, v); err != nil {
		t.Fatalf("kratos-%s/%s: HTTP %d: %v", version, file, status, err)
	}
}

func TestGoldenCourierRecovery(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		want     courierMessage
		rendered *sdk.RenderedMessage
	}{
		"v1.3.1": {
			want: courierMessage{
				Recipient: "sample-e6b29bc1@example.com",
				Subject:   "Recover access to your account",
				Body:      "Hi,\n\nplease recover access to your account by entering the following code:\n\n669428\n",
				// v1.3.1 sends no HTML.
				TemplateType: "recovery_code_valid",
				MessageType:  "email",
				TemplateData: templateData{Identity: &identityRef{ID: "0d425070-5194-4a68-8bea-4f9b804ff210"}, RecoveryCode: "669428"},
			},
			rendered: &sdk.RenderedMessage{Subject: "Recover access to your account",
				TextBody: "Hi,\n\nplease recover access to your account by entering the following code:\n\n669428\n"},
		},
		"v26.2.0": {
			want: courierMessage{
				Recipient: "sample-a7948910@example.com",
				// v26 puts the code in the subject.
				Subject: "Use code 898026 to recover access to your account",
				Body:    "Recover access to your account by entering the following code:\n\n898026\n\nIf this was not you, do nothing. This code expires in 60 minutes.\n",
				// Kratos's built-in "HTML" template is this text too.
				HTMLBody:     "Recover access to your account by entering the following code:\n\n898026\n\nIf this was not you, do nothing. This code expires in 60 minutes.\n",
				TemplateType: "recovery_code_valid",
				MessageType:  "email",
				TemplateData: templateData{Identity: &identityRef{ID: "0715e615-808a-4104-9aac-a8c14e1a3891"}, RecoveryCode: "898026"},
			},
			rendered: &sdk.RenderedMessage{Subject: "Use code 898026 to recover access to your account",
				TextBody: "Recover access to your account by entering the following code:\n\n898026\n\nIf this was not you, do nothing. This code expires in 60 minutes.\n",
				HTMLBody: "Recover access to your account by entering the following code:\n\n898026\n\nIf this was not you, do nothing. This code expires in 60 minutes.\n"},
		},
	}
	for version, tt := range tests {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			var got courierMessage
			readSample(t, version, "courier-recovery_code_valid.json", &got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parsed (-want +got):\n%s", diff)
			}
			if err := got.validate(); err != nil {
				t.Errorf("validate: %v", err)
			}
			if !isRecovery(got.TemplateType) {
				t.Errorf("%s is not taken for a recovery", got.TemplateType)
			}
			// Sent as rendered while the gateway is disabled or cannot keep
			// the current password.
			if diff := cmp.Diff(tt.rendered, rendered(got)); diff != "" {
				t.Errorf("rendered (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGoldenCourierPassThrough(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		want     courierMessage
		rendered *sdk.RenderedMessage
	}{
		"v1.3.1": {
			want: courierMessage{
				Recipient:    "sample-e6b29bc1@example.com",
				Subject:      "Please verify your email address",
				Body:         "Hi,\n\nplease verify your account by entering the following code:\n\n554486\n\nor clicking the following link:\n\nhttp://127.0.0.1:44249/self-service/verification?code=554486&flow=b3dda0b9-aa00-4855-9ca2-ce8905b905c0\n",
				TemplateType: "verification_code_valid",
				MessageType:  "email",
				TemplateData: templateData{Identity: &identityRef{ID: "0d425070-5194-4a68-8bea-4f9b804ff210"}},
			},
			rendered: &sdk.RenderedMessage{Subject: "Please verify your email address",
				TextBody: "Hi,\n\nplease verify your account by entering the following code:\n\n554486\n\nor clicking the following link:\n\nhttp://127.0.0.1:44249/self-service/verification?code=554486&flow=b3dda0b9-aa00-4855-9ca2-ce8905b905c0\n"},
		},
		"v26.2.0": {
			want: courierMessage{
				Recipient:    "sample-a7948910@example.com",
				Subject:      "Use code 345289 to verify your account",
				Body:         "Verify your account with the following code:\n\n345289\n\nor clicking the following link:\n\nhttp://127.0.0.1:41637/self-service/verification?code=345289&flow=a532d4de-f0d5-4d79-990a-111b90b030e9\n\nIf this was not you, do nothing. This code / link expires in 60 minutes.\n",
				HTMLBody:     "Verify your account with the following code:\n\n345289\n\nor clicking the following link:\n\n<a href=\"http://127.0.0.1:41637/self-service/verification?code=345289&amp;flow=a532d4de-f0d5-4d79-990a-111b90b030e9\">http://127.0.0.1:41637/self-service/verification?code=345289&amp;flow=a532d4de-f0d5-4d79-990a-111b90b030e9</a>\n\nIf this was not you, do nothing. This code / link expires in 60 minutes.\n",
				TemplateType: "verification_code_valid",
				MessageType:  "email",
				TemplateData: templateData{Identity: &identityRef{ID: "0715e615-808a-4104-9aac-a8c14e1a3891"}},
			},
			// Both parts, as Kratos's own SMTP courier would send them.
			rendered: &sdk.RenderedMessage{Subject: "Use code 345289 to verify your account",
				TextBody: "Verify your account with the following code:\n\n345289\n\nor clicking the following link:\n\nhttp://127.0.0.1:41637/self-service/verification?code=345289&flow=a532d4de-f0d5-4d79-990a-111b90b030e9\n\nIf this was not you, do nothing. This code / link expires in 60 minutes.\n",
				HTMLBody: "Verify your account with the following code:\n\n345289\n\nor clicking the following link:\n\n<a href=\"http://127.0.0.1:41637/self-service/verification?code=345289&amp;flow=a532d4de-f0d5-4d79-990a-111b90b030e9\">http://127.0.0.1:41637/self-service/verification?code=345289&amp;flow=a532d4de-f0d5-4d79-990a-111b90b030e9</a>\n\nIf this was not you, do nothing. This code / link expires in 60 minutes.\n"},
		},
	}
	for version, tt := range tests {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			var got courierMessage
			readSample(t, version, "courier-verification_code_valid.json", &got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parsed (-want +got):\n%s", diff)
			}
			if err := got.validate(); err != nil {
				t.Errorf("validate: %v", err)
			}
			if isRecovery(got.TemplateType) {
				t.Errorf("%s is taken for a recovery", got.TemplateType)
			}
			if diff := cmp.Diff(tt.rendered, rendered(got)); diff != "" {
				t.Errorf("rendered (-want +got):\n%s", diff)
			}
		})
	}
}

// The login and settings hooks get `function(ctx) { identity: ctx.identity }`
// (configs/kratos/identity-hook.jsonnet): the gateway reads the identity's
// id and its metadata_public, the change-required flag included.
func TestGoldenLoginHook(t *testing.T) {
	t.Parallel()
	testGoldenHook(t, "hook-login-after-password.json")
}

func TestGoldenSettingsHook(t *testing.T) {
	t.Parallel()
	testGoldenHook(t, "hook-settings-after-password.json")
}

func testGoldenHook(t *testing.T, file string) {
	const meta = `{"password_change_required":true,"temporary_password_expires_at":"2030-01-01T00:00:00Z"}`
	for version, id := range map[string]string{
		"v1.3.1":  "0d425070-5194-4a68-8bea-4f9b804ff210",
		"v26.2.0": "0715e615-808a-4104-9aac-a8c14e1a3891",
	} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			var got hookBody
			readSample(t, version, file, &got)
			if got.Identity == nil || got.Identity.ID != id {
				t.Fatalf("identity = %+v, want id %s", got.Identity, id)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, got.Identity.MetadataPublic); err != nil || compact.String() != meta {
				t.Errorf("metadata_public = %s (%v), want %s", got.Identity.MetadataPublic, err, meta)
			}
			m, err := metadataObject(got.Identity.MetadataPublic)
			if err != nil || m["password_change_required"] != true {
				t.Errorf("metadataObject = %v, %v; want the flag", m, err)
			}
		})
	}
}

// The password migration hook gets Kratos's own body (no template in
// configs/kratos): the identifier typed and the password typed.
func TestGoldenPasswordHook(t *testing.T) {
	t.Parallel()
	for version, identifier := range map[string]string{
		"v1.3.1":  "sample-e6b29bc1@example.com",
		"v26.2.0": "sample-a7948910@example.com",
	} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			var got migrationRequest
			readSample(t, version, "hook-password-migration.json", &got)
			if got.Identifier == nil || *got.Identifier != identifier {
				t.Errorf("identifier = %v, want %s", got.Identifier, identifier)
			}
			if got.Password == nil || *got.Password != "Sample-Login-Password-47" {
				t.Errorf("password = %v, want the one typed at login in the capture", got.Password)
			}
		})
	}
}
