package smtptest

import (
	"errors"
	"strings"

	"github.com/emersion/go-smtp"
)

// XOAUTH2 is the SASL mechanism with which Gmail, Microsoft 365 and others
// take an OAuth2 access token instead of a password
// (https://developers.google.com/gmail/imap/xoauth2-protocol). go-sasl has
// no server for it (its OAUTHBEARER is RFC 7628, another format).
const XOAUTH2 = "XOAUTH2"

// The replies of an XOAUTH2 exchange that fails.
var (
	// ErrXOAUTH2Refused answers a token the validator refused with an error
	// that is not an *smtp.SMTPError.
	ErrXOAUTH2Refused = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	// ErrXOAUTH2Syntax answers a response that is not
	// "user=<user>\x01auth=Bearer <token>\x01\x01".
	ErrXOAUTH2Syntax = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed XOAUTH2 response"}
)

// ParseXOAUTH2 reads a client's XOAUTH2 response (base64-decoded):
// "user=<user>\x01auth=Bearer <token>\x01\x01". Keys other than user and
// auth are ignored; a missing, empty or repeated user or auth, an auth
// scheme other than Bearer (in any case) or a missing final \x01\x01 is
// malformed.
func ParseXOAUTH2(resp []byte) (user, token string, ok bool) {
	rest, found := strings.CutSuffix(string(resp), "\x01\x01")
	if !found {
		return "", "", false
	}
	var haveUser, haveAuth bool
	for _, field := range strings.Split(rest, "\x01") {
		key, value, found := strings.Cut(field, "=")
		if !found {
			return "", "", false
		}
		switch key {
		case "user":
			if haveUser {
				return "", "", false
			}
			user, haveUser = value, true
		case "auth":
			if haveAuth {
				return "", "", false
			}
			scheme, tok, found := strings.Cut(value, " ")
			if !found || !strings.EqualFold(scheme, "Bearer") {
				return "", "", false
			}
			token, haveAuth = tok, true
		}
	}
	if user == "" || token == "" {
		return "", "", false
	}
	return user, token, true
}

// XOAUTH2Server is the server side of one AUTH XOAUTH2 exchange, a
// sasl.Server for go-smtp. It takes the client's response from the AUTH
// command's initial response or, without one, asks for it with an empty
// 334, and asks Validate. A malformed response is answered
// ErrXOAUTH2Syntax; a refused token with the *smtp.SMTPError in Validate's
// error, ErrXOAUTH2Refused when there is none. One value serves one
// exchange.
type XOAUTH2Server struct {
	// Validate decides whether user may send with the access token; nil
	// accepts. An *smtp.SMTPError in the error chain is the reply.
	Validate func(user, token string) error
	// ErrorChallenge refuses a token as Gmail and Microsoft 365 do: a 334
	// whose challenge is a JSON error status
	// ({"status":"401","schemes":"bearer"}), to which the client answers
	// with an empty line, then the refusal. Unset: the refusal at once.
	ErrorChallenge bool

	// malformed, if set, is told of a malformed response (the package's
	// own server counts it).
	malformed func()

	asked   bool  // sent the empty 334 asking for the response
	refused error // the refusal held back behind the error challenge
}

// Next implements sasl.Server.
func (s *XOAUTH2Server) Next(response []byte) (challenge []byte, done bool, err error) {
	if s.refused != nil {
		// Whatever the client answered to the error challenge.
		return nil, false, s.refused
	}
	if response == nil && !s.asked {
		s.asked = true
		return []byte{}, false, nil
	}
	user, token, ok := ParseXOAUTH2(response)
	if !ok {
		if s.malformed != nil {
			s.malformed()
		}
		return nil, false, ErrXOAUTH2Syntax
	}
	if s.Validate != nil {
		if err := s.Validate(user, token); err != nil {
			reply := ErrXOAUTH2Refused
			if e := (*smtp.SMTPError)(nil); errors.As(err, &e) {
				reply = e
			}
			if s.ErrorChallenge {
				s.refused = reply
				return []byte(`{"status":"401","schemes":"bearer"}`), false, nil
			}
			return nil, false, reply
		}
	}
	return nil, true, nil
}
