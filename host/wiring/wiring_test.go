package wiring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
)

// admin is an in-memory Kratos admin API for the stages that fail before
// or around the flows; the flows themselves run against real Kratos in
// integration/doctor_test.go.
type admin struct {
	mu        sync.Mutex
	readyErr  error
	createErr error
	deleteErr error
	byAddr    map[string]*kratosadmin.Identity
	deleted   []string
	created   []string
}

func (a *admin) Ready(context.Context) error { return a.readyErr }

func (a *admin) CreateIdentity(_ context.Context, _ string, traits, meta map[string]any) (*kratosadmin.Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.createErr != nil {
		return nil, a.createErr
	}
	addr := fmt.Sprint(traits["email"])
	id := &kratosadmin.Identity{ID: "canary-" + addr, Traits: traits, MetadataAdmin: meta, CreatedAt: time.Now()}
	a.byAddr[addr] = id
	a.created = append(a.created, addr)
	return id, nil
}

func (a *admin) DeleteIdentity(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deleteErr != nil {
		return a.deleteErr
	}
	a.deleted = append(a.deleted, id)
	for k, v := range a.byAddr {
		if v.ID == id {
			delete(a.byAddr, k)
		}
	}
	return nil
}

func (a *admin) FindByIdentifier(_ context.Context, addr string) (*kratosadmin.Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id, ok := a.byAddr[addr]; ok {
		return id, nil
	}
	return nil, kratosadmin.ErrNotFound
}

func (a *admin) Identity(context.Context, string) (*kratosadmin.Identity, error) {
	return nil, kratosadmin.ErrNotFound
}

func (a *admin) SetPassword(context.Context, *kratosadmin.Identity, kratosadmin.PasswordUpdate) error {
	return errors.New("kratos admin API refused the request: HTTP 400")
}

func (a *admin) Patch(context.Context, string, ...kratosadmin.Op) error { return nil }

func (a *admin) CourierMessages(context.Context, string) ([]kratosadmin.CourierMessage, error) {
	return nil, nil
}

const schemaOK = `{"properties":{"traits":{"type":"object","properties":{"email":{"type":"string","format":"email","ory.sh/kratos":{"credentials":{"password":{"identifier":true}},"recovery":{"via":"email"}}}}}}}`

// publicAPI serves Kratos's health and schema endpoints with the given
// schema; flows are not served (the stages after the canary fail there).
func publicAPI(t *testing.T, schema string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health/ready":
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		case "/schemas":
			_ = json.NewEncoder(w).Encode([]map[string]any{{"id": "default", "schema": json.RawMessage(schema)}})
		default:
			http.Error(w, `{"error":{"message":"not served here"}}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func checker(t *testing.T, a *admin, publicURL string, logs *bytes.Buffer) *Checker {
	keys, err := sealing.New([]string{"0123456789abcdef0123456789abcdef-test"})
	if err != nil {
		t.Fatal(err)
	}
	return &Checker{Admin: a, PublicURL: publicURL, HTTP: http.DefaultClient, Keys: keys,
		Log: slog.New(slog.NewJSONHandler(logs, nil)), Poll: time.Millisecond, CourierWait: 10 * time.Millisecond}
}

func stageOf(rep Report, name string) Stage {
	for _, s := range rep.Stages {
		if s.Name == name {
			return s
		}
	}
	return Stage{Name: "missing: " + name}
}

// Every failure is a named stage, never a panic; the canary is deleted on
// every path, and a deletion that fails is logged with the canary's id.
func TestStagesFailByName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		admin     func(a *admin)
		schema    string
		public    bool // serve the public API
		failStage string
		wantText  string
		created   bool
	}{
		{"Kratos admin unreachable", func(a *admin) { a.readyErr = fmt.Errorf("get: %w: connection refused", kratosadmin.ErrUnavailable) }, schemaOK, true, StageAdmin, "connection refused", false},
		{"Kratos public unreachable", func(*admin) {}, schemaOK, false, StagePublic, "kratos public API", false},
		{"schema without a mail trait for recovery", func(*admin) {}, `{"properties":{"traits":{"type":"object","properties":{"username":{"type":"string","ory.sh/kratos":{"credentials":{"password":{"identifier":true}}}}}}}}`, true, StageSchema, "recovery", false},
		{"schema Kratos will not satisfy", func(a *admin) {
			a.createErr = fmt.Errorf("create identity: %w: HTTP 400: does not match pattern", kratosadmin.ErrRejected)
		}, schemaOK, true, StageCanary, "does not match pattern", false},
		{"canary that cannot be deleted", func(a *admin) { a.deleteErr = errors.New("kratos admin API unavailable") }, schemaOK, true, StageCleanup, "unavailable", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := &admin{byAddr: map[string]*kratosadmin.Identity{}}
			tt.admin(a)
			url := "http://127.0.0.1:1" // nothing listens there
			if tt.public {
				url = publicAPI(t, tt.schema)
			}
			var logs bytes.Buffer
			rep := checker(t, a, url, &logs).Doctor(context.Background())
			s := stageOf(rep, tt.failStage)
			if s.Err == nil || !strings.Contains(s.Err.Error(), tt.wantText) || s.Fix == "" {
				t.Fatalf("stage %s = %+v, want a failure saying %q with a fix\n%+v", tt.failStage, s, tt.wantText, rep.Stages)
			}
			if err := rep.Err(); tt.failStage != StageCleanup && (err == nil || !strings.Contains(err.Error(), tt.failStage)) {
				t.Errorf("Report.Err = %v, want it to name %s", err, tt.failStage)
			}
			if (len(a.created) > 0) != tt.created && tt.failStage != StageCleanup {
				t.Errorf("canary created = %v", a.created)
			}
			if len(a.created) > 0 && a.deleteErr == nil && len(a.deleted) != len(a.created) {
				t.Errorf("created %v, deleted %v: a canary was left behind", a.created, a.deleted)
			}
			if a.deleteErr != nil && !strings.Contains(logs.String(), `"canary_identity_id":"canary-`) {
				t.Errorf("the canary that could not be deleted is not named in the log:\n%s", logs.String())
			}
		})
	}
}

// A canary left behind by a killed run is removed and its slot reused; a
// canary a run is using right now is left alone and the next slot taken.
func TestCanarySlots(t *testing.T) {
	t.Parallel()
	stale := &kratosadmin.Identity{ID: "left-behind", CreatedAt: time.Now().Add(-10 * time.Minute), MetadataAdmin: map[string]any{markerKey: map[string]any{}}}
	busy := &kratosadmin.Identity{ID: "in-use", CreatedAt: time.Now(), MetadataAdmin: map[string]any{markerKey: map[string]any{}}}
	// Registered through self-service a moment ago to hold a slot: it has
	// no marker (self-service cannot write metadata_admin).
	squatter := &kratosadmin.Identity{ID: "squatter", CreatedAt: time.Now()}
	a := &admin{byAddr: map[string]*kratosadmin.Identity{canaryAddress(0): stale, canaryAddress(1): busy, canaryAddress(2): squatter}}
	var logs bytes.Buffer
	r := &run{c: checker(t, a, "", &logs)}
	if err := r.createCanary(context.Background(), "default", json.RawMessage(schemaOK)); err != nil {
		t.Fatal(err)
	}
	if r.addr != canaryAddress(0) || len(a.deleted) != 1 || a.deleted[0] != "left-behind" {
		t.Errorf("took %s, deleted %v; want slot 0 after removing the one left behind", r.addr, a.deleted)
	}
	if !strings.Contains(logs.String(), `"canary_identity_id":"left-behind"`) {
		t.Errorf("the removal is not logged with the id:\n%s", logs.String())
	}
	r2 := &run{c: r.c}
	if err := r2.createCanary(context.Background(), "default", json.RawMessage(schemaOK)); err != nil {
		t.Fatal(err)
	}
	if r2.addr != canaryAddress(2) || len(a.deleted) != 2 || a.deleted[1] != "squatter" {
		t.Errorf("second run took %s, deleted %v; want slot 2 after removing the unmarked squatter (slots 0 and 1 are in use)", r2.addr, a.deleted)
	}
	if !strings.Contains(logs.String(), `"reason":"not created by the gateway"`) {
		t.Errorf("the squatter's removal does not say why:\n%s", logs.String())
	}
	if _, ok := a.byAddr[canaryAddress(1)]; !ok {
		t.Errorf("a canary in use was deleted")
	}
}
