// Package pwhash checks a login password against a hash Kratos stores.
//
// While a password reset is pending the gateway keeps the user's current
// hash sealed and has to decide on its own whether a login still proves the
// old password; Kratos cannot be asked. So this package must give exactly
// Kratos's (v1.3.1) verdict or none at all: it checks only the formats it can
// check the way Kratos does, and answers ErrUnsupported for the rest (md5,
// sha*, ssha, *-crypt, hmac, firescrypt, ...) rather than guess, so the caller
// leaves the account to Kratos's own recovery. The hash may have been imported
// from anywhere, so the cost it asks for is bounded: a forged hash must not be
// able to make the gateway spend unbounded CPU or memory on one login.
package pwhash

import (
	"crypto/pbkdf2"
	"crypto/sha1" // pbkdf2-sha1 hashes imported into Kratos
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/scrypt"
)

// ErrUnsupported means the hash is in a format this package cannot check
// (e.g. an imported md5 or firescrypt hash); callers must not guess.
var ErrUnsupported = errors.New("password hash format not supported (bcrypt, argon2id, argon2i, pbkdf2-sha1/-sha256/-sha512 and scrypt are)")

// The names Format returns.
const (
	formatBcrypt   = "bcrypt"
	formatArgon2id = "argon2id"
	formatArgon2i  = "argon2i"
	formatPbkdf2   = "pbkdf2"
	formatScrypt   = "scrypt"
	formatNone     = "none"
	formatOther    = "other"
)

// Bounds on what a hash may ask for. Each admits what Kratos's hashers write
// with any sane configuration and what common imports carry; beyond them a
// hash is refused rather than computed.
const (
	// Derived keys: Kratos's configs require at least 16 bytes; a shorter
	// key would let a wrong password match by chance too often to vouch for.
	minKeyLen = 16
	maxKeyLen = 1024

	// bcrypt: Kratos defaults to 12 and its own tests go to 15; each step
	// doubles the work, and 31 (bcrypt's limit) would take days.
	maxBcryptCost uint32 = 16

	// argon2: memory in KiB (4 GiB), passes, lanes (a uint8, as in Kratos).
	maxArgon2Memory     = 4 << 20
	maxArgon2Iterations = 64
	maxArgon2Threads    = 255

	// pbkdf2: iterations times output blocks of the digest, i.e. calls of
	// the HMAC chain. Admits 10M iterations for a key of one digest length
	// (OWASP asks 600k for sha256, 1.3M for sha1), half that for two.
	maxPbkdf2Work = 10_000_000

	// scrypt: N (a power of two) up to 2^20 at r=8 uses 128*N*r = 1 GiB;
	// N*r*p bounds the time to that of twice such a hash.
	maxScryptN      = 1 << 20
	maxScryptR      = 32
	maxScryptP      = 64
	maxScryptMemory = 1 << 30
	maxScryptWork   = 1 << 24
)

// Format names the kind of hash for logs and metric labels: one of "bcrypt",
// "argon2id", "argon2i", "pbkdf2", "scrypt", "none" (no hash) and "other"
// (a format this package does not check). It never returns any part of hash;
// a hash of a named format may still be malformed (see Supported).
func Format(hash string) string {
	switch {
	case hash == "":
		return formatNone
	case isBcrypt(hash):
		return formatBcrypt
	case strings.HasPrefix(hash, "$argon2id$"):
		return formatArgon2id
	case strings.HasPrefix(hash, "$argon2i$"):
		return formatArgon2i
	case pbkdf2Digest(hash) != nil:
		return formatPbkdf2
	case strings.HasPrefix(hash, "$scrypt$"):
		return formatScrypt
	default:
		return formatOther
	}
}

func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

// pbkdf2Digest returns the digest of a pbkdf2 hash Verify checks, or nil.
// Kratos accepts any $pbkdf2-sha<digits>$ but computes sha224 and sha384 with
// SHA3 and any other digest it does not know with sha256; rather than copy
// that, such hashes are left to Kratos.
func pbkdf2Digest(s string) func() hash.Hash {
	switch {
	case strings.HasPrefix(s, "$pbkdf2-sha1$"):
		return sha1.New
	case strings.HasPrefix(s, "$pbkdf2-sha256$"):
		return sha256.New
	case strings.HasPrefix(s, "$pbkdf2-sha512$"):
		return sha512.New
	default:
		return nil
	}
}

// Supported reports whether Verify can check hash: its format is one Verify
// knows, it is well formed and its parameters are within bounds. It computes
// nothing expensive.
func Supported(hash string) bool {
	_, err := parse(hash)
	return err == nil
}

// Verify reports whether password matches hash. A wrong password is
// (false, nil); an error means the hash could not be checked at all, and is
// ErrUnsupported when its format is not one this package knows. Errors name
// the offending part or parameter but never contain the hash or password.
func Verify(hash, password string) (bool, error) {
	check, err := parse(hash)
	if err != nil {
		return false, err
	}
	return check(password)
}

// A checker compares a password with a parsed hash.
type checker func(password string) (bool, error)

// parse validates hash, cheaply, and returns what checks a password with it.
func parse(hash string) (checker, error) {
	switch Format(hash) {
	case formatBcrypt:
		return parseBcrypt(hash)
	case formatArgon2id:
		return parseArgon2(formatArgon2id, argon2.IDKey, hash)
	case formatArgon2i:
		return parseArgon2(formatArgon2i, argon2.Key, hash)
	case formatPbkdf2:
		return parsePbkdf2(hash)
	case formatScrypt:
		return parseScrypt(hash)
	default:
		return nil, ErrUnsupported
	}
}

// parseBcrypt bounds the cost; x/crypto/bcrypt parses the rest.
func parseBcrypt(hash string) (checker, error) {
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		// bcrypt's own errors may quote bytes of the hash.
		return nil, errors.New("bcrypt hash: malformed")
	}
	if cost > int(maxBcryptCost) {
		// bcrypt.Cost has already refused costs below bcrypt.MinCost.
		return nil, outOfRange(formatBcrypt, "cost", uint32(bcrypt.MinCost), maxBcryptCost)
	}
	return func(password string) (bool, error) {
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		if err != nil {
			return false, errors.New("bcrypt hash: malformed")
		}
		// bcrypt reads only 72 bytes; Kratos refuses longer passwords rather
		// than let a prefix of them match, and so does the gateway (after
		// the comparison, so that the answer takes as long as Dummy's).
		return len(password) <= 72, nil
	}, nil
}

// parseArgon2 reads the PHC string Kratos reads for both variants:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>, with salt and key
// in unpadded standard base64.
func parseArgon2(format string, derive func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte, hash string) (checker, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 {
		return nil, fmt.Errorf("%s hash: not of the form $%s$v=…$m=…,t=…,p=…$salt$key", format, format)
	}
	version, err := params(format, parts[2], "v")
	if err != nil {
		return nil, err
	}
	if version[0] != argon2.Version {
		return nil, fmt.Errorf("%s hash: parameter v must be %d", format, argon2.Version)
	}
	p, err := params(format, parts[3], "m", "t", "p")
	if err != nil {
		return nil, err
	}
	memory, iterations, threads := p[0], p[1], p[2]
	if err := inRange(format, "m", memory, 1, maxArgon2Memory); err != nil {
		return nil, err
	}
	if err := inRange(format, "t", iterations, 1, maxArgon2Iterations); err != nil {
		return nil, err
	}
	if err := inRange(format, "p", threads, 1, maxArgon2Threads); err != nil {
		return nil, err
	}
	salt, key, err := saltAndKey(format, base64.RawStdEncoding, parts[4], parts[5])
	if err != nil {
		return nil, err
	}
	return func(password string) (bool, error) {
		got := derive([]byte(password), salt, iterations, memory, uint8(threads), uint32(len(key)))
		return subtle.ConstantTimeCompare(got, key) == 1, nil
	}, nil
}

// parsePbkdf2 reads what Kratos reads:
// $pbkdf2-<digest>$i=<iterations>,l=<length>$<salt>$<key>, salt and key in
// unpadded standard base64. Like Kratos it derives as many bytes as the key
// has and uses l for nothing; Kratos's own import examples carry an l that
// differs from the key's length.
func parsePbkdf2(hash string) (checker, error) {
	digest := pbkdf2Digest(hash)
	parts := strings.Split(hash, "$")
	if len(parts) != 5 {
		return nil, errors.New("pbkdf2 hash: not of the form $pbkdf2-<digest>$i=…,l=…$salt$key")
	}
	p, err := params(formatPbkdf2, parts[2], "i", "l")
	if err != nil {
		return nil, err
	}
	iterations := p[0]
	salt, key, err := saltAndKey(formatPbkdf2, base64.RawStdEncoding, parts[3], parts[4])
	if err != nil {
		return nil, err
	}
	size := digest().Size()
	blocks := (len(key) + size - 1) / size
	if err := inRange(formatPbkdf2, "i", iterations, 1, uint32(maxPbkdf2Work/blocks)); err != nil {
		return nil, err
	}
	return func(password string) (bool, error) {
		got, err := pbkdf2.Key(digest, password, salt, int(iterations), len(key))
		if err != nil {
			return false, fmt.Errorf("pbkdf2 hash: %w", err)
		}
		return subtle.ConstantTimeCompare(got, key) == 1, nil
	}, nil
}

// parseScrypt reads what Kratos reads: $scrypt$ln=<N>,r=<r>,p=<p>$<salt>$<key>,
// salt and key in padded standard base64. Unlike in passlib's format, "ln"
// is N itself, not its logarithm.
func parseScrypt(hash string) (checker, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 5 {
		return nil, errors.New("scrypt hash: not of the form $scrypt$ln=…,r=…,p=…$salt$key")
	}
	p, err := params(formatScrypt, parts[2], "ln", "r", "p")
	if err != nil {
		return nil, err
	}
	n, r, par := p[0], p[1], p[2]
	if err := checkScrypt(n, r, par); err != nil {
		return nil, err
	}
	salt, key, err := saltAndKey(formatScrypt, base64.StdEncoding, parts[3], parts[4])
	if err != nil {
		return nil, err
	}
	return func(password string) (bool, error) {
		got, err := scrypt.Key([]byte(password), salt, int(n), int(r), int(par), len(key))
		if err != nil {
			return false, fmt.Errorf("scrypt hash: %w", err)
		}
		return subtle.ConstantTimeCompare(got, key) == 1, nil
	}, nil
}

// checkScrypt bounds scrypt's memory (128*N*r bytes) and time (N*r*p).
func checkScrypt(n, r, p uint32) error {
	if n < 2 || n > maxScryptN || n&(n-1) != 0 {
		return fmt.Errorf("scrypt hash: parameter ln (N) must be a power of two in [2, %d]", maxScryptN)
	}
	if err := inRange(formatScrypt, "r", r, 1, maxScryptR); err != nil {
		return err
	}
	if err := inRange(formatScrypt, "p", p, 1, maxScryptP); err != nil {
		return err
	}
	if uint64(n)*uint64(r)*128 > maxScryptMemory {
		return fmt.Errorf("scrypt hash: parameters ln and r need more than %d bytes of memory", maxScryptMemory)
	}
	if uint64(n)*uint64(r)*uint64(p) > maxScryptWork {
		return fmt.Errorf("scrypt hash: parameters ln, r and p exceed %d units of work", maxScryptWork)
	}
	return nil
}

// params reads a parameter list exactly as Kratos writes it: the given names
// in order, "name=value" separated by commas, values decimal and fitting 32
// bits. (Kratos's fmt.Sscanf would also let trailing text pass; a hash with
// any is refused here, which leaves it to Kratos.)
func params(format, list string, names ...string) ([]uint32, error) {
	fields := strings.Split(list, ",")
	if len(fields) != len(names) {
		return nil, fmt.Errorf("%s hash: parameters are not %s=…", format, strings.Join(names, "=…,"))
	}
	values := make([]uint32, len(names))
	for i, field := range fields {
		v, ok := strings.CutPrefix(field, names[i]+"=")
		if !ok || v == "" || strings.Trim(v, "0123456789") != "" {
			return nil, fmt.Errorf("%s hash: parameter %s missing or not a decimal number", format, names[i])
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			// Not wrapped: strconv's error quotes the value.
			return nil, fmt.Errorf("%s hash: parameter %s does not fit 32 bits", format, names[i])
		}
		values[i] = uint32(n)
	}
	return values, nil
}

func inRange(format, name string, v, lo, hi uint32) error {
	if v < lo || v > hi {
		return outOfRange(format, name, lo, hi)
	}
	return nil
}

func outOfRange(format, name string, lo, hi uint32) error {
	return fmt.Errorf("%s hash: parameter %s out of range [%d, %d]", format, name, lo, hi)
}

// saltAndKey decodes the salt and derived key with enc in strict mode, as
// Kratos does, and bounds the key's length.
func saltAndKey(format string, enc *base64.Encoding, salt64, key64 string) (salt, key []byte, err error) {
	enc = enc.Strict()
	salt, err = enc.DecodeString(salt64)
	if err != nil {
		return nil, nil, fmt.Errorf("%s hash: salt: %w", format, err)
	}
	key, err = enc.DecodeString(key64)
	if err != nil {
		return nil, nil, fmt.Errorf("%s hash: key: %w", format, err)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, nil, fmt.Errorf("%s hash: key length out of range [%d, %d] bytes", format, minKeyLen, maxKeyLen)
	}
	return salt, key, nil
}

// dummyHash is a bcrypt hash (cost 12, Kratos's default) of a random string
// nobody knows; comparing against it costs what a real check costs.
const dummyHash = "$2a$12$yk8P0tgfH2lvv7/HFCMnJuG7x8xfIpBXgyJfjfy.zGdWfXN7Z9AVi"

// Dummy spends the time of a real check, so that answering "unknown user"
// takes as long as "wrong password" and identifiers cannot be enumerated.
func Dummy(password string) {
	_, _ = Verify(dummyHash, password)
}
