package pwhash

import (
	"errors"
	"testing"
)

// Hashes written by a real Kratos v1.3.1 (hashers.algorithm bcrypt and
// argon2, default parameters) for the password below.
const (
	kratosPassword = "Kratos-Hashed-Password-1"
	kratosBcrypt   = "$2a$12$D6YC4apeFqT3Vf6cXOH34ul79Z70veYL.s8MwAHmHGZfxVHNcLTtC"
	kratosArgon2id = "$argon2id$v=19$m=131072,t=1,p=4$M2deUjSBzMRemgqPcM3EZw$uWbfIV5qWnufB2XKo3EtTGx0hrZUIWGvqL0qTaHTGKQ"
)

func TestVerifyKratosHashes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, hash, password string
		want                 bool
	}{
		{"bcrypt right", kratosBcrypt, kratosPassword, true},
		{"bcrypt wrong", kratosBcrypt, kratosPassword + "x", false},
		{"argon2id right", kratosArgon2id, kratosPassword, true},
		{"argon2id wrong", kratosArgon2id, "kratos-hashed-password-1", false},
		{"argon2id empty", kratosArgon2id, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Verify(tt.hash, tt.password)
			if err != nil || got != tt.want {
				t.Errorf("Verify = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestVerifyRefusesWhatItCannotCheck(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"pbkdf2":               "$pbkdf2-sha256$i=100000,l=32$c2FsdA$aGFzaA",
		"scrypt":               "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
		"argon2i":              "$argon2i$v=19$m=65536,t=1,p=2$c29tZXNhbHQ$aGFzaA",
		"argon2id version":     "$argon2id$v=16$m=65536,t=1,p=2$c29tZXNhbHQ$aGFzaA",
		"argon2id huge memory": "$argon2id$v=19$m=999999999,t=1,p=2$c29tZXNhbHQ$aGFzaA",
		"argon2id truncated":   "$argon2id$v=19$m=65536,t=1,p=2$c29tZXNhbHQ",
		"bcrypt truncated":     "$2a$12$D6YC4apeFqT3",
		"empty":                "",
	}
	for name, hash := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ok, err := Verify(hash, kratosPassword)
			if ok || err == nil {
				t.Errorf("Verify(%s) = %v, %v; want an error and no match", name, ok, err)
			}
		})
	}
	if _, err := Verify(tests["pbkdf2"], "x"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("pbkdf2: %v, want ErrUnsupported", err)
	}
	for hash, want := range map[string]bool{kratosBcrypt: true, kratosArgon2id: true, tests["pbkdf2"]: false, tests["argon2i"]: false} {
		if Supported(hash) != want {
			t.Errorf("Supported(%.12s…) = %v", hash, !want)
		}
	}
}

func TestDummyHashIsAValidBcryptHash(t *testing.T) {
	t.Parallel()
	if ok, err := Verify(dummyHash, "anything"); ok || err != nil {
		t.Fatalf("Verify(dummyHash) = %v, %v; want a clean mismatch", ok, err)
	}
}
