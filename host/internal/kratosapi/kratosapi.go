// Package kratosapi builds the kratos-client-go client of one Kratos
// endpoint, for the admin and the public API clients alike.
package kratosapi

import (
	"net/http"
	"strings"

	kratos "github.com/ory/kratos-client-go"
)

// New returns the API client of the Kratos endpoint at url (admin or
// public) that calls through httpClient.
func New(url string, httpClient *http.Client) *kratos.APIClient {
	cfg := kratos.NewConfiguration()
	cfg.Servers = kratos.ServerConfigurations{{URL: strings.TrimRight(url, "/")}}
	cfg.HTTPClient = httpClient
	cfg.UserAgent = "kratos-email-gateway"
	return kratos.NewAPIClient(cfg)
}
