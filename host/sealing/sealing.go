// Package sealing protects what the gateway keeps in Kratos's metadata_admin:
// it seals data with AES-256-GCM under a rotating list of keys, and keys the
// hash of a temporary password so that reading metadata_admin is not enough
// to log in.
package sealing

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MinSecretLength is the least number of bytes of a secrets.cipher entry.
const MinSecretLength = 32

var (
	// ErrNoKey means none of the configured keys opens the sealed value:
	// it was sealed under a key that has since been removed, or tampered with.
	ErrNoKey = errors.New("no configured secrets.cipher key opens the sealed value")
	// ErrFormat means the value is not something Seal or MAC produced.
	ErrFormat = errors.New("sealed value has an unknown format")
)

// key is one secrets.cipher entry with the keys derived from it. Sealing and
// MACs use separate keys so that neither use weakens the other.
type key struct {
	id     string // names the key in sealed values, so opening needs no guessing
	aead   cipher.AEAD
	macKey []byte
	// msgKey keys the digest of a Kratos message (MessageKey). It has a
	// label of its own so that no other key of the gateway, the webhook's
	// API key least of all, can recompute a digest from which a 6-digit
	// recovery code could be found by trying them all.
	msgKey []byte
}

// Keyring seals with its first key and opens with any. Operators rotate by
// putting a new key first and removing the old one once pending resets
// sealed under it have expired.
type Keyring struct {
	keys []key
}

// New derives a Keyring from the secrets.cipher entries, first one sealing.
func New(secrets []string) (*Keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("secrets.cipher: at least one key is required")
	}
	kr := &Keyring{}
	seen := map[string]bool{}
	for i, s := range secrets {
		if len(s) < MinSecretLength {
			return nil, fmt.Errorf("secrets.cipher[%d]: %d bytes, need at least %d random bytes", i, len(s), MinSecretLength)
		}
		sealKey := derive(s, "kratos-email-gateway seal v1")
		block, err := aes.NewCipher(sealKey)
		if err != nil {
			return nil, fmt.Errorf("secrets.cipher[%d]: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secrets.cipher[%d]: %w", i, err)
		}
		id := hex.EncodeToString(derive(s, "kratos-email-gateway key id v1")[:4])
		if seen[id] {
			return nil, fmt.Errorf("secrets.cipher[%d]: the same key appears twice", i)
		}
		seen[id] = true
		msgKey, err := hkdf.Key(sha256.New, []byte(s), nil, "kratos-email-gateway message key v1", sha256.Size)
		if err != nil {
			return nil, fmt.Errorf("secrets.cipher[%d]: derive the message key: %w", i, err)
		}
		kr.keys = append(kr.keys, key{id: id, aead: aead, macKey: derive(s, "kratos-email-gateway temporary password v1"), msgKey: msgKey})
	}
	return kr, nil
}

func derive(secret, purpose string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// Seal encrypts plaintext bound to context (e.g. the identity id), so a
// sealed value copied to another identity does not open.
func (kr *Keyring) Seal(plaintext []byte, context string) (string, error) {
	k := kr.keys[0]
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := k.aead.Seal(nonce, nonce, plaintext, []byte(context))
	return "v1." + k.id + "." + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open reverses Seal with whichever configured key sealed the value.
func (kr *Keyring) Open(sealed, context string) ([]byte, error) {
	id, body, err := split(sealed)
	if err != nil {
		return nil, err
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, ErrFormat
	}
	for _, k := range kr.keys {
		if k.id != id {
			continue
		}
		if len(raw) < k.aead.NonceSize() {
			return nil, ErrFormat
		}
		plain, err := k.aead.Open(nil, raw[:k.aead.NonceSize()], raw[k.aead.NonceSize():], []byte(context))
		if err != nil {
			return nil, ErrNoKey
		}
		return plain, nil
	}
	return nil, ErrNoKey
}

// MAC returns a keyed hash of a temporary password bound to context. The
// password has well over 96 random bits, so a fast keyed hash is enough: no
// one can search that space, and no slow hash has to run while Kratos's
// courier waits.
func (kr *Keyring) MAC(password, context string) string {
	k := kr.keys[0]
	return "v1." + k.id + "." + hex.EncodeToString(mac(k.macKey, password, context))
}

// Verify reports whether password matches a value MAC produced under any
// configured key, in constant time.
func (kr *Keyring) Verify(tag, password, context string) (bool, error) {
	id, body, err := split(tag)
	if err != nil {
		return false, err
	}
	want, err := hex.DecodeString(body)
	if err != nil {
		return false, ErrFormat
	}
	for _, k := range kr.keys {
		if k.id == id {
			return hmac.Equal(want, mac(k.macKey, password, context)), nil
		}
	}
	return false, ErrNoKey
}

// MessageKey returns a stable digest of a Kratos message, which carries no
// id of its own: the identity and the recovery code or link are unique per
// message. It is keyed (its own HKDF label of the first key) because a
// recovery code has only a million values: an unkeyed digest kept in
// metadata_admin would give the code away to anyone who can read it.
func (kr *Keyring) MessageKey(identityID, codeOrLink string) string {
	k := kr.keys[0]
	return "v1." + k.id + "." + hex.EncodeToString(mac(k.msgKey, codeOrLink, identityID)[:16])
}

// SameMessage reports whether stored is the MessageKey of this message under
// any configured key, so a key rotation does not make Kratos's retry of a
// message already handled look new.
func (kr *Keyring) SameMessage(stored, identityID, codeOrLink string) bool {
	id, body, err := split(stored)
	if err != nil {
		return false
	}
	want, err := hex.DecodeString(body)
	if err != nil {
		return false
	}
	for _, k := range kr.keys {
		if k.id == id {
			return hmac.Equal(want, mac(k.msgKey, codeOrLink, identityID)[:16])
		}
	}
	return false
}

func mac(macKey []byte, password, context string) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte(context))
	m.Write([]byte{0})
	m.Write([]byte(password))
	return m.Sum(nil)
}

func split(v string) (id, body string, err error) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) != 3 || parts[0] != "v1" {
		return "", "", ErrFormat
	}
	return parts[1], parts[2], nil
}
