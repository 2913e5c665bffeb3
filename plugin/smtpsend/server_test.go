package smtpsend

import (
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
)

// Credentials the test servers accept.
const (
	testUser     = smtptest.User
	testPassword = smtptest.Password
)

// config returns a Sender config aimed at srv.
func config(srv *smtptest.Server, security string) Config {
	return Config{
		Host:              "127.0.0.1",
		Port:              srv.Port,
		EmailAddress:      testUser,
		SenderName:        "Example Support",
		AuthorizationCode: testPassword,
		Security:          security,
		CAFile:            srv.PKI.CAFile,
	}
}
