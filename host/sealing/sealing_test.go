package sealing

import (
	"errors"
	"strings"
	"testing"
)

const (
	keyA = "0123456789abcdef0123456789abcdef-key-A"
	keyB = "fedcba9876543210fedcba9876543210-key-B"
)

func mustNew(t *testing.T, secrets ...string) *Keyring {
	t.Helper()
	kr, err := New(secrets)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealOpens(t *testing.T) {
	t.Parallel()
	kr := mustNew(t, keyA)
	hash := "$2a$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
	sealed, err := kr.Seal([]byte(hash), "identity-1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "R9h/cIPz") {
		t.Fatal("the sealed value shows the plaintext")
	}
	got, err := kr.Open(sealed, "identity-1")
	if err != nil || string(got) != hash {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, _ := kr.Seal([]byte(hash), "identity-1")
	if again == sealed {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	kr := mustNew(t, keyA)
	sealed, _ := kr.Seal([]byte("secret"), "identity-1")
	tampered := sealed[:len(sealed)-2] + "AA"
	if sealed[len(sealed)-2:] == "AA" {
		tampered = sealed[:len(sealed)-2] + "BB"
	}
	tests := []struct {
		name    string
		kr      *Keyring
		sealed  string
		context string
		want    error
	}{
		{"other identity", kr, sealed, "identity-2", ErrNoKey},
		{"tampered", kr, tampered, "identity-1", ErrNoKey},
		{"key removed", mustNew(t, keyB), sealed, "identity-1", ErrNoKey},
		{"not sealed", kr, "$2a$12$plainhash", "identity-1", ErrFormat},
		{"bad base64", kr, "v1.abcd.!!!", "identity-1", ErrFormat},
		{"too short", kr, "v1." + strings.Split(sealed, ".")[1] + ".AAAA", "identity-1", ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.kr.Open(tt.sealed, tt.context); !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

// Rotation: a new key first seals; the old one, still listed, opens what it sealed.
func TestRotation(t *testing.T) {
	t.Parallel()
	old := mustNew(t, keyA)
	sealed, _ := old.Seal([]byte("hash"), "id")
	tag := old.MAC("Temp-Pass-1234", "id")

	rotated := mustNew(t, keyB, keyA)
	if got, err := rotated.Open(sealed, "id"); err != nil || string(got) != "hash" {
		t.Errorf("after rotation Open = %q, %v", got, err)
	}
	if ok, err := rotated.Verify(tag, "Temp-Pass-1234", "id"); !ok || err != nil {
		t.Errorf("after rotation Verify = %v, %v", ok, err)
	}
	fresh, _ := rotated.Seal([]byte("hash"), "id")
	if _, err := old.Open(fresh, "id"); !errors.Is(err, ErrNoKey) {
		t.Errorf("a value sealed with the new key opened with the old keyring only: %v", err)
	}
}

func TestMAC(t *testing.T) {
	t.Parallel()
	kr := mustNew(t, keyA)
	tag := kr.MAC("Temp-Pass-1234", "id")
	if strings.Contains(tag, "Temp-Pass") {
		t.Fatal("the MAC shows the password")
	}
	tests := []struct {
		password, context string
		want              bool
	}{
		{"Temp-Pass-1234", "id", true},
		{"Temp-Pass-1235", "id", false},
		{"Temp-Pass-1234", "other-id", false},
		{"", "id", false},
	}
	for _, tt := range tests {
		if ok, err := kr.Verify(tag, tt.password, tt.context); ok != tt.want || err != nil {
			t.Errorf("Verify(%q, %q) = %v, %v; want %v", tt.password, tt.context, ok, err, tt.want)
		}
	}
	if _, err := mustNew(t, keyB).Verify(tag, "Temp-Pass-1234", "id"); !errors.Is(err, ErrNoKey) {
		t.Errorf("Verify with a removed key = %v, want ErrNoKey", err)
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	for name, secrets := range map[string][]string{
		"none":      nil,
		"short":     {"too-short"},
		"duplicate": {keyA, keyA},
	} {
		if _, err := New(secrets); err == nil || !strings.Contains(err.Error(), "secrets.cipher") {
			t.Errorf("%s: New = %v, want an error naming secrets.cipher", name, err)
		}
		if _, err := New(secrets); err != nil && strings.Contains(err.Error(), "too-short") {
			t.Errorf("%s: the error reveals the key", name)
		}
	}
}

func TestMessageKey(t *testing.T) {
	t.Parallel()
	kr := mustNew(t, keyA)
	stored := kr.MessageKey("id-1", "123456")
	if strings.Contains(stored, "123456") {
		t.Fatal("the message key shows the code")
	}
	if stored != kr.MessageKey("id-1", "123456") {
		t.Fatal("the message key is not stable")
	}
	rotated := mustNew(t, keyB, keyA)
	tests := []struct {
		name           string
		kr             *Keyring
		stored         string
		identity, code string
		want           bool
	}{
		{"same message", kr, stored, "id-1", "123456", true},
		{"same message after a key rotation", rotated, stored, "id-1", "123456", true},
		{"another code", kr, stored, "id-1", "123457", false},
		{"another identity", kr, stored, "id-2", "123456", false},
		{"key removed", mustNew(t, keyB), stored, "id-1", "123456", false},
		{"empty stored value", kr, "", "id-1", "123456", false},
		{"not a message key", kr, "v1.zz.not-hex", "id-1", "123456", false},
	}
	for _, tt := range tests {
		if got := tt.kr.SameMessage(tt.stored, tt.identity, tt.code); got != tt.want {
			t.Errorf("%s: SameMessage = %v, want %v", tt.name, got, tt.want)
		}
	}
	// The digest has a key of its own: neither the temporary password MAC
	// nor a digest keyed with any other label of the same secret equals it.
	if kr.MAC("123456", "id-1") == stored || strings.HasSuffix(kr.MAC("123456", "id-1"), stored[strings.LastIndex(stored, ".")+1:]) {
		t.Error("the message key reuses the temporary password's MAC key")
	}
}
