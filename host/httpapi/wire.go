package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// courierMessage mirrors the body Kratos's courier POSTs with
// delivery_strategy: http and the body template `function(ctx) ctx`:
// courier/http_channel.go httpDataModel {recipient, subject, body,
// template_type, template_data, message_type}, plus html_body and
// request_headers from v26 on (testdata/ holds captures of both versions).
// template_data is the template's model (courier/template/email/*.go); only
// the fields the gateway reads are named here, the rest is ignored.
type courierMessage struct {
	Recipient    string       `json:"recipient"`
	Subject      string       `json:"subject"`
	Body         string       `json:"body"`
	HTMLBody     string       `json:"html_body"` // the HTML template's output, from v26 on
	TemplateType string       `json:"template_type"`
	MessageType  string       `json:"message_type"`
	TemplateData templateData `json:"template_data"`
}

type templateData struct {
	Identity *identityRef `json:"identity"`
	// RecoveryCode is set for recovery_code_valid, RecoveryURL for
	// recovery_valid; with the identity they identify the message.
	RecoveryCode string `json:"recovery_code"`
	RecoveryURL  string `json:"recovery_url"`
}

// identityRef is Kratos's identity as it appears in template data and web
// hook bodies; the gateway reads the id and looks the rest up itself.
type identityRef struct {
	ID string `json:"id"`
}

// hookBody is what the login and settings web hooks send with
// `function(ctx) { identity: ctx.identity }` (or the whole ctx): Kratos's
// identity (selfservice/hook/web_hook.go templateContext.Identity). Other
// fields are ignored.
type hookBody struct {
	Identity *hookIdentity `json:"identity"`
}

type hookIdentity struct {
	ID string `json:"id"`
	// MetadataPublic stays raw to tell an absent key from a null one.
	MetadataPublic json.RawMessage `json:"metadata_public"`
}

// settingsReply is a 200 answer to a web hook with response.parse: Kratos
// replaces the identity's metadata_public and metadata_admin with the ones
// given here, each only when it is a non-empty JSON value, before it
// persists the new password (parseWebhookResponse).
type settingsReply struct {
	Identity *settingsIdentity `json:"identity,omitempty"`
}

type settingsIdentity struct {
	// MetadataPublic is raw so that an emptied object ({}) is still sent:
	// a map with omitempty would drop it and leave the flag in place.
	MetadataPublic json.RawMessage `json:"metadata_public,omitempty"`
	MetadataAdmin  map[string]any  `json:"metadata_admin,omitempty"`
}

// hookError is the body of a refusing web hook that Kratos shows in the
// flow's UI (web_hook.go rawHookResponse / errorMessage / detailedMessage).
type hookError struct {
	Messages []hookErrorMessages `json:"messages"`
}

type hookErrorMessages struct {
	InstancePtr string          `json:"instance_ptr"`
	Messages    []hookErrorText `json:"messages"`
}

type hookErrorText struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
	Type string `json:"type"`
}

// textExpired uses Kratos's id for a generic validation error, so UIs that
// translate by id still show it as an error.
const (
	idValidationGeneric = 4000001
	textExpired         = "Your temporary password has expired. Request a new one with \"Forgot password\"."
)

func newHookError(text string) hookError {
	return hookError{Messages: []hookErrorMessages{{
		InstancePtr: "#/",
		Messages:    []hookErrorText{{ID: idValidationGeneric, Text: text, Type: "error"}},
	}}}
}

// migrationRequest is what Kratos's password migration hook POSTs
// (hook.PasswordMigrationRequest); pointers tell a missing field from an
// empty one.
type migrationRequest struct {
	Identifier *string `json:"identifier"`
	Password   *string `json:"password"`
}

// migrationReply is the only answer that makes Kratos accept a password.
type migrationReply struct {
	Status string `json:"status"`
}

func isRecovery(templateType string) bool { return courier.IsRecovery(templateType) }

// message is what the gateway acts on.
func (m *courierMessage) message() courier.Message {
	out := courier.Message{
		Recipient: m.Recipient, Subject: m.Subject, Body: m.Body, HTMLBody: m.HTMLBody, TemplateType: m.TemplateType,
		RecoveryCode: m.TemplateData.RecoveryCode, RecoveryURL: m.TemplateData.RecoveryURL,
	}
	if m.TemplateData.Identity != nil {
		out.IdentityID = m.TemplateData.Identity.ID
	}
	return out
}

// rendered is the mail Kratos rendered.
func rendered(m courierMessage) *sdk.RenderedMessage { return courier.Rendered(m.message()) }

var (
	errBadMessage  = errors.New("bad courier message")
	errBadMetadata = errors.New("identity.metadata_public is not a JSON object")
)

// validate names the first problem; each is something Kratos's body template
// or a caller got wrong, so a retry would not help.
func (m *courierMessage) validate() error {
	switch {
	case strings.TrimSpace(m.Recipient) == "":
		return fmt.Errorf("%w: recipient is missing; pass Kratos's ctx to the body (function(ctx) ctx)", errBadMessage)
	case strings.ContainsAny(m.Recipient, "\r\n"):
		return fmt.Errorf("%w: recipient contains CR or LF", errBadMessage)
	case strings.ContainsAny(m.Subject, "\r\n"):
		return fmt.Errorf("%w: subject contains CR or LF", errBadMessage)
	case m.TemplateType == "":
		return fmt.Errorf("%w: template_type is missing", errBadMessage)
	case m.MessageType != "" && m.MessageType != "email":
		return fmt.Errorf("%w: message_type %q: the gateway delivers email only; route SMS through another channel", errBadMessage, m.MessageType)
	case isRecovery(m.TemplateType) && (m.TemplateData.Identity == nil || m.TemplateData.Identity.ID == ""):
		return fmt.Errorf("%w: template_data.identity.id is missing for a recovery message", errBadMessage)
	}
	return nil
}

// jsonKind names the JSON value a Go type decodes from, for an answer that
// tells the sender which field has the wrong type: Go's own names
// (httpapi.templateData) mean nothing to Kratos or its operator.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	default:
		return "number"
	}
}
