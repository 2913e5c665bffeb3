package httpapi

import (
	"errors"
	"fmt"
	"strings"
)

// courierMessage mirrors the body Kratos v1.3.1's courier POSTs with
// delivery_strategy: http and the body template `function(ctx) ctx`:
// courier/http_channel.go httpDataModel {recipient, subject, body,
// template_type, template_data, message_type}. template_data is the
// template's model (courier/template/email/*.go); only the fields the
// gateway reads are named here, the rest is ignored.
type courierMessage struct {
	Recipient    string       `json:"recipient"`
	Subject      string       `json:"subject"`
	Body         string       `json:"body"`
	TemplateType string       `json:"template_type"`
	MessageType  string       `json:"message_type"`
	TemplateData templateData `json:"template_data"`
}

type templateData struct {
	Identity *identityRef `json:"identity"`
}

// identityRef is Kratos's identity as it appears in template data and web
// hook bodies; the gateway reads the id and looks the rest up itself.
type identityRef struct {
	ID string `json:"id"`
}

// Recovery template types (courier/template/type.go): the code method and the
// link method. Both become a temporary password while the gateway is enabled.
const (
	templateRecoveryCodeValid = "recovery_code_valid"
	templateRecoveryValid     = "recovery_valid"
)

func isRecovery(templateType string) bool {
	return templateType == templateRecoveryCodeValid || templateType == templateRecoveryValid
}

var errBadMessage = errors.New("bad courier message")

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
