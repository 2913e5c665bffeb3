// Package pwhash checks a password against the hashes Kratos stores: bcrypt
// and argon2id, the two hashers Kratos ships.
package pwhash

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// ErrUnsupported means the hash is in a format this package cannot check
// (e.g. an imported pbkdf2 or scrypt hash); callers must not guess.
var ErrUnsupported = errors.New("password hash format not supported (bcrypt and argon2id are)")

// Supported reports whether Verify can check hash.
func Supported(hash string) bool {
	return isBcrypt(hash) || strings.HasPrefix(hash, "$argon2id$")
}

func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

// Verify reports whether password matches hash. A wrong password is
// (false, nil); an error means the hash could not be checked at all.
func Verify(hash, password string) (bool, error) {
	switch {
	case isBcrypt(hash):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("bcrypt hash: %w", err)
		}
		return true, nil
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, password)
	default:
		return false, ErrUnsupported
	}
}

// verifyArgon2id reads the PHC string Kratos writes
// ($argon2id$v=19$m=…,t=…,p=…$salt$key, unpadded base64) and recomputes it.
func verifyArgon2id(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 {
		return false, errors.New("argon2id hash: not a PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("argon2id hash: version %q not supported", parts[2])
	}
	var memory, iterations uint32
	var parallelism uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &memory, &iterations, &parallelism); err != nil {
		return false, fmt.Errorf("argon2id hash: parameters %q: %w", parts[3], err)
	}
	// Refuse parameters no Kratos config produces, so a forged hash cannot
	// make the gateway allocate without bound.
	if memory == 0 || memory > 4<<20 || iterations == 0 || iterations > 64 || parallelism == 0 {
		return false, fmt.Errorf("argon2id hash: parameters %q out of range", parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("argon2id hash: salt: %w", err)
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) == 0 || len(key) > 1024 {
		return false, errors.New("argon2id hash: key is not valid base64 of a sane length")
	}
	got := argon2.IDKey([]byte(password), salt, iterations, memory, parallelism, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// dummyHash is a bcrypt hash (cost 12, Kratos's default) of a random string
// nobody knows; comparing against it costs what a real check costs.
const dummyHash = "$2a$12$yk8P0tgfH2lvv7/HFCMnJuG7x8xfIpBXgyJfjfy.zGdWfXN7Z9AVi"

// Dummy spends the time of a real check, so that answering "unknown user"
// takes as long as "wrong password" and identifiers cannot be enumerated.
func Dummy(password string) {
	_, _ = Verify(dummyHash, password)
}
