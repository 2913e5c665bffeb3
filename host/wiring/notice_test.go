package wiring

import (
	"testing"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
)

// The check's canaries go through the settings hook, which makes a
// password_changed notice: it must mail no canary address.
func TestCanariesGetNoNotice(t *testing.T) {
	t.Parallel()
	for slot := range canarySlots {
		id := &kratosadmin.Identity{RecoveryAddresses: []string{canaryAddress(slot)}}
		if got := notify.Recipients(id); len(got) != 0 {
			t.Errorf("notice recipients of canary %d = %q, want none", slot, got)
		}
	}
}
