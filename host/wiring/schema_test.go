package wiring

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const addr = "kratos-email-gateway-canary-0@canary.invalid"

func TestCanaryTraits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		schema  string
		want    map[string]any
		wantErr string
	}{
		{
			name: "configs/kratos shape: one email trait for login and recovery, optional others left out",
			schema: `{"properties":{"traits":{"type":"object","properties":{
				"email":{"type":"string","format":"email","ory.sh/kratos":{"credentials":{"password":{"identifier":true}},"recovery":{"via":"email"}}},
				"name":{"type":"string"}},"required":["email"]}}}`,
			want: map[string]any{"email": addr},
		},
		{
			name: "username to log in, email to recover, required name, enum, minimum, nested object",
			schema: `{"properties":{"traits":{"type":"object","properties":{
				"username":{"type":"string","ory.sh/kratos":{"credentials":{"password":{"identifier":true}}}},
				"contact":{"type":"object","properties":{"email":{"type":"string","format":"email","ory.sh/kratos":{"recovery":{"via":"email"}}}}},
				"name":{"type":"string","minLength":10},
				"plan":{"type":"string","enum":["free","pro"]},
				"age":{"type":"integer","minimum":18},
				"tos":{"type":["boolean","null"]}},
				"required":["username","name","plan","age","tos"]}}}`,
			want: map[string]any{"username": addr, "contact": map[string]any{"email": addr}, "name": "canaryxxxx", "plan": "free", "age": 18.0, "tos": false},
		},
		{
			name:    "no password identifier",
			schema:  `{"properties":{"traits":{"type":"object","properties":{"email":{"type":"string","ory.sh/kratos":{"recovery":{"via":"email"}}}}}}}`,
			wantErr: "password",
		},
		{
			name:    "recovery by SMS only",
			schema:  `{"properties":{"traits":{"type":"object","properties":{"phone":{"type":"string","ory.sh/kratos":{"credentials":{"password":{"identifier":true}},"recovery":{"via":"sms"}}}}}}}`,
			wantErr: "recovery",
		},
		{name: "no traits", schema: `{"properties":{}}`, wantErr: "traits"},
		{name: "not JSON", schema: `{`, wantErr: "not a JSON schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := canaryTraits([]byte(tt.schema), addr)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want an ErrSchema naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("traits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIsCanary(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		canaryAddress(3):               true,
		"X@Canary.Invalid":             true,
		"alice@example.com":            false,
		"alice@canary.invalid.example": false,
		"canary.invalid@example.com":   false,
		"no-at-sign":                   false,
	} {
		if got := IsCanary(addr); got != want {
			t.Errorf("IsCanary(%q) = %v, want %v", addr, got, want)
		}
	}
}
