package recovery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
)

// notices records what the Service tells its notifier; the notifier itself
// is tested in package notify, and the whole way to a mailbox in the
// integration suite.
type notices struct {
	mu  sync.Mutex
	got []notify.Notice
}

func (n *notices) Notify(nt notify.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, nt)
}

// withNotices rebuilds f's Service with a notices recorder.
func withNotices(f *fixture) *notices {
	rec := &notices{}
	f.svc = New(f.ids, f.svc.mail, f.svc.now, slog.New(slog.NewJSONHandler(&f.logs, nil)), WithNotices(rec))
	return rec
}

// A login settles a pending reset: only the current password, which voids
// it, makes a reset_void notice; the temporary password (the user recovers)
// and a refused password make none.
func TestOnlyAVoidedResetIsNoticed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		password string
		after    time.Duration
		want     []notify.Notice
	}{
		{"current password", currentPassword, time.Minute,
			[]notify.Notice{{Kind: notify.ResetVoid, IdentityID: "id-1", At: now.Add(time.Minute)}}},
		{"current password after the temporary one expired", currentPassword, 2 * time.Hour,
			[]notify.Notice{{Kind: notify.ResetVoid, IdentityID: "id-1", At: now.Add(2 * time.Hour)}}},
		{"temporary password", "Tmp-1", time.Minute, nil},
		{"wrong password", "Guess-123", time.Minute, nil},
		{"expired temporary password", "Tmp-1", 2 * time.Hour, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			rec := withNotices(f)
			issuing(f, "Tmp-1")
			if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
				t.Fatal(err)
			}
			if len(rec.got) != 0 {
				t.Fatalf("a reset made notices %+v, want none", rec.got)
			}
			f.svc.now = func() time.Time { return now.Add(tt.after) }
			if _, err := f.svc.CheckPassword(context.Background(), "alice@example.com", tt.password, keepPolicy); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rec.got); diff != "" {
				t.Errorf("notices (-want +got):\n%s", diff)
			}
			// Only the first login voids: the next one with the same
			// password finds no pending reset and makes no notice.
			if _, err := f.svc.CheckPassword(context.Background(), "alice@example.com", tt.password, keepPolicy); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rec.got); diff != "" {
				t.Errorf("notices after a second login (-want +got):\n%s", diff)
			}
		})
	}
}

// A void that Kratos did not take (the write of the settled reset failed)
// makes no notice: the login is refused and the reset still pending.
func TestAVoidKratosDidNotTakeIsNotNoticed(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	rec := withNotices(f)
	issuing(f, "Tmp-1")
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	f.svc.ids = failingPatch{f.ids} // keep_test.go's: Kratos refuses the write
	if v, err := f.svc.CheckPassword(context.Background(), "alice@example.com", currentPassword, keepPolicy); err == nil || v != NoMatch {
		t.Fatalf("CheckPassword = %q, %v; want NoMatch and the patch's error", v, err)
	}
	if len(rec.got) != 0 {
		t.Errorf("notices %+v, want none", rec.got)
	}
}

// The settings hook's PasswordChanged tells of every change, pending reset
// or not, with a digest of the hash Kratos held then, so the notice waits
// for Kratos to store the new one; when the identity cannot be read, the
// notice goes without the digest.
func TestPasswordChangedIsNoticed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pending bool
		readErr bool
		want    notify.Notice
	}{
		{"no reset pending", false, false, notify.Notice{Kind: notify.PasswordChanged, IdentityID: "id-1", At: now, Supersedes: notify.HashDigest(currentHash)}},
		{"a reset pending", true, false, notify.Notice{Kind: notify.PasswordChanged, IdentityID: "id-1", At: now, Supersedes: notify.HashDigest("")}},
		{"identity unreadable", false, true, notify.Notice{Kind: notify.PasswordChanged, IdentityID: "id-1", At: now}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			rec := withNotices(f)
			if tt.pending {
				issuing(f, "Tmp-1")
				if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
					t.Fatal(err)
				}
			}
			if tt.readErr {
				delete(f.ids.byID, "id-1") // Kratos answers 404
			}
			_, err := f.svc.PasswordChanged(context.Background(), "id-1", keepPolicy)
			if tt.readErr != errors.Is(err, kratosadmin.ErrNotFound) {
				t.Fatalf("PasswordChanged error = %v", err)
			}
			if diff := cmp.Diff([]notify.Notice{tt.want}, rec.got); diff != "" {
				t.Errorf("notices (-want +got):\n%s", diff)
			}
		})
	}
}

// A Service built without WithNotices (gateway reset) tells nobody, and
// works as before.
func TestWithoutNoticesNothingIsTold(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	issuing(f, "Tmp-1")
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	if v, err := f.svc.CheckPassword(context.Background(), "alice@example.com", currentPassword, keepPolicy); err != nil || v != MatchCurrent {
		t.Fatalf("CheckPassword = %q, %v", v, err)
	}
	if _, err := f.svc.PasswordChanged(context.Background(), "id-1", keepPolicy); err != nil {
		t.Fatal(err)
	}
}
