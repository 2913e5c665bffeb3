package config

import (
	"strings"
	"testing"
)

// Parse takes any bytes: it never panics, an accepted config validates, and
// no error repeats the secrets the environment gave it (the fuzzer controls
// only the file, so it cannot put them in another field).
func FuzzParse(f *testing.F) {
	for _, s := range []string{minimal, minimal + "password: {ttl: 5m, cooldown: 0s}\n", "enabled: [", "webhook: {api_key: 1}",
		minimal + "listen: \"\\x00\"", minimal + "smtp: {port: 70000}", minimal + "admin: {listen: 127.0.0.1:1, api_key: 0123456789abcdef-secret}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		const apiKey, cipher = "fuzz-api-key-7f3a9c0b1d2e4f56", "fuzz-cipher-c81b2e0f9a7d4c3b5e6f1a2b3c4d5e6f"
		c, err := Parse(raw, []string{"GATEWAY_WEBHOOK__API_KEY=" + apiKey, "GATEWAY_SECRETS__CIPHER=" + cipher})
		if err != nil {
			for _, secret := range []string{apiKey, cipher} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error repeats a secret: %v", err)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
	})
}
