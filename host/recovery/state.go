package recovery

import (
	"maps"
	"sync"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
)

// Metadata keys other people's UIs and configs read (see DESIGN.md).
const (
	KeyChangeRequired = "password_change_required"
	KeyExpiresAt      = "temporary_password_expires_at"
)

// The gateway's own state lives under metadata_admin.email_gateway.
const (
	KeyAdmin       = "email_gateway"
	KeyLastResetAt = "last_reset_at"
	// KeyMessage identifies the Kratos message a reset answered, so a retry
	// of that message is recognised.
	KeyMessage = "message_key"
	// KeyMailedAt is written once the SMTP server accepted the mail; only
	// mailed resets start a cooldown or count as handled.
	KeyMailedAt = "mailed_at"
	// KeyPending holds a reset that keeps the current password until the
	// temporary one is used: the sealed current hash, the keyed hash of the
	// temporary password and its expiry.
	KeyPending = "pending"
	// KeySettled says how the last reset ended ("void": the current
	// password was used; "changed": a new password was set), so a recovery
	// inside the cooldown can tell a worthless mail from a valid one.
	KeySettled    = "settled"
	KeySealedHash = "sealed_current_hash"
	KeyTempMAC    = "temporary_password_mac"
)

// pending is metadata_admin.email_gateway.pending.
type pending struct {
	SealedHash string
	TempMAC    string
	ExpiresAt  time.Time
}

func readPending(admin map[string]any) (pending, bool) {
	p := asMap(asMap(admin[KeyAdmin])[KeyPending])
	if p == nil {
		return pending{}, false
	}
	exp, _ := parseTime(p[KeyExpiresAt])
	sealed, _ := p[KeySealedHash].(string)
	mac, _ := p[KeyTempMAC].(string)
	return pending{SealedHash: sealed, TempMAC: mac, ExpiresAt: exp}, true
}

// PendingAdmin is the metadata_admin a reset of an identity without a
// password leaves: temp logs in through the migration hook until expires,
// and nothing else does. The wiring check writes it on its canary identity
// to prove that Kratos calls the hook and the gateway answers it.
func PendingAdmin(keys *sealing.Keyring, identityID, temp string, expires time.Time) map[string]any {
	return map[string]any{KeyAdmin: map[string]any{KeyPending: pending{TempMAC: keys.MAC(temp, identityID), ExpiresAt: expires}.toMap()}}
}

func (p pending) toMap() map[string]any {
	return map[string]any{KeySealedHash: p.SealedHash, KeyTempMAC: p.TempMAC, KeyExpiresAt: p.ExpiresAt.UTC().Format(time.RFC3339)}
}

// with returns a copy of base with add laid over it; base is not modified.
func with(base, add map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(add))
	maps.Copy(out, base)
	maps.Copy(out, add)
	return out
}

// without returns a copy of base without keys.
func without(base map[string]any, keys ...string) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func parseTime(v any) (time.Time, bool) {
	str, _ := v.(string)
	t, err := time.Parse(time.RFC3339, str)
	return t, err == nil
}

// keyedLocks serialises work per key; entries live only while in use.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

func (k *keyedLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()

	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
