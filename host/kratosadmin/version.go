package kratosadmin

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	kratos "github.com/ory/kratos-client-go"
)

// Switching a password credential to the migration hook takes a PUT of the
// whole identity on Kratos v1.3.1, whose admin PATCH means to keep
// credentials out of reach: it puts the stored credentials back after
// applying a patch (identity/handler.go, "See ory/cloud#148"). The PUT
// writes back the traits the gateway read a moment before, so a trait
// change that lands in between (a settings flow, another admin) is undone.
// Kratos v26.2.0 allows a patch of /credentials/password/... on purpose,
// and a patch names only the password config and the metadata: the traits
// stay whatever Kratos holds (integration/kratos_versions_test.go proves
// both against the real servers). So the gateway patches where the Kratos
// behind the admin URL says (GET /version) it is v26.2.0 or newer, and
// keeps the PUT everywhere else, a version it cannot read included.
//
// (A real v1.3.1 does apply such a patch, but only by accident: the map it
// restores is the one the patch was decoded into. The gateway does not
// build on that.)

// patchMinVersion is the oldest Kratos whose patch of /credentials/password
// was verified here; v25.x was never tested and gets the PUT.
var patchMinVersion = [3]int{26, 2, 0}

// versionTTL bounds how long an answer of GET /version is trusted: a Kratos
// replaced by another version is seen within it.
const versionTTL = time.Minute

type versionCache struct {
	mu      sync.Mutex
	version string
	at      time.Time
}

// Version is the version the Kratos behind the admin URL reports (GET
// /version), e.g. "v26.2.0"; an answer is reused for a minute.
func (c *Client) Version(ctx context.Context) (string, error) {
	e := c.cur.Load()
	e.ver.mu.Lock()
	cached, at := e.ver.version, e.ver.at
	e.ver.mu.Unlock()
	if cached != "" && time.Since(at) < versionTTL {
		return cached, nil
	}
	// Not under the lock: a hanging Kratos must hold up only this call.
	v, resp, err := e.api.MetadataAPI.GetVersion(ctx).Execute()
	if err != nil {
		return "", classify("kratos version", resp, err)
	}
	e.ver.mu.Lock()
	e.ver.version, e.ver.at = v.GetVersion(), time.Now()
	e.ver.mu.Unlock()
	return v.GetVersion(), nil
}

// patchesPassword says whether a JSON Patch of /credentials/password/...
// takes effect on this Kratos. Any doubt (no answer, an unknown version)
// is a no: the PUT works on every version.
func (c *Client) patchesPassword(ctx context.Context) bool {
	v, err := c.Version(ctx)
	return err == nil && versionAtLeast(v, patchMinVersion)
}

// versionAtLeast compares a release version "vX.Y.Z" (a pre-release or
// build suffix is ignored) with min; anything else, such as a development
// build's "master", is not at least anything.
func versionAtLeast(v string, min [3]int) bool {
	v, ok := strings.CutPrefix(v, "v")
	if !ok {
		return false
	}
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return false
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}

// patchToMigrationHook switches id's password credential to the migration
// hook and writes u's metadata in one JSON Patch. The whole password config
// is replaced with the one the PUT leaves: an empty hashed_password and
// use_password_migration_hook make Kratos ask the hook. Kratos creates the
// credential (with its identifiers) for an identity that has none. A nil
// metadata map is left as stored (it was null when read).
func (c *Client) patchToMigrationHook(ctx context.Context, id *Identity, u PasswordUpdate) error {
	ops := []kratos.JsonPatch{{Op: "add", Path: "/credentials/password/config",
		Value: map[string]any{"hashed_password": "", "use_password_migration_hook": true}}}
	if u.MetadataPublic != nil {
		ops = append(ops, kratos.JsonPatch{Op: "add", Path: "/metadata_public", Value: u.MetadataPublic})
	}
	if u.MetadataAdmin != nil {
		ops = append(ops, kratos.JsonPatch{Op: "add", Path: "/metadata_admin", Value: u.MetadataAdmin})
	}
	_, resp, err := c.api().IdentityAPI.PatchIdentity(ctx, id.ID).JsonPatch(ops).Execute()
	if err != nil {
		return classify("patch identity "+id.ID, resp, err)
	}
	return nil
}
