// Package bulkreset issues temporary passwords to many identities as an
// admin action (after a breach): bounded concurrency, progress, a summary,
// and safe to run again after an interruption.
package bulkreset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

// Resetter is the recovery path the run uses for every identity.
type Resetter interface {
	Reset(ctx context.Context, req recovery.Request, pol recovery.Policy) (recovery.Result, error)
}

// Lookup is what the run reads from Kratos's admin API.
type Lookup interface {
	Identity(ctx context.Context, id string) (*kratosadmin.Identity, error)
	FindByIdentifier(ctx context.Context, identifier string) (*kratosadmin.Identity, error)
	ListIdentityIDs(ctx context.Context, pageToken string, pageSize int) ([]string, string, error)
}

// Selection says which identities a run resets; exactly one field is set.
type Selection struct {
	ID    string
	Email string
	File  io.Reader // one identity id per line; blank lines and # comments ignored
	All   bool
	// PageSize is the admin API page size for All.
	PageSize int
}

// Describe names the selection, for the run id and the log.
func (s Selection) describe(fileName string) string {
	switch {
	case s.ID != "":
		return "id:" + s.ID
	case s.Email != "":
		return "email:" + strings.ToLower(s.Email)
	case s.File != nil:
		return "file:" + fileName
	default:
		return "all"
	}
}

// RunID derives a default run id from the selection and the day, so that
// running the same command again the same day resumes instead of resetting
// the identities it already did.
func RunID(sel Selection, fileName string, now time.Time) string {
	sum := sha256.Sum256([]byte(sel.describe(fileName) + "|" + now.UTC().Format("2006-01-02")))
	return hex.EncodeToString(sum[:6])
}

// Options shape a run.
type Options struct {
	RunID       string
	DryRun      bool
	Concurrency int
	Policy      recovery.Policy
	// Progress is told after each identity; done counts all finished ones.
	Progress func(done int, total int, r Result)
}

// Result is what happened to one identity.
type Result struct {
	IdentityID string
	Outcome    string // reset, skipped, failed, would-reset
	Reason     string
}

// Summary is the whole run.
type Summary struct {
	Results []Result
}

// Count returns how many results have the outcome.
func (s Summary) Count(outcome string) int {
	n := 0
	for _, r := range s.Results {
		if r.Outcome == outcome {
			n++
		}
	}
	return n
}

// Failed lists the failures, sorted by identity id.
func (s Summary) Failed() []Result { return s.with("failed") }

// Skipped lists the skipped identities, sorted by identity id.
func (s Summary) Skipped() []Result { return s.with("skipped") }

func (s Summary) with(outcome string) []Result {
	var out []Result
	for _, r := range s.Results {
		if r.Outcome == outcome {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IdentityID < out[j].IdentityID })
	return out
}

// Run resolves the selection and resets each identity. It goes on after a
// failure of one identity; only a selection that cannot be read at all (an
// unreadable file, Kratos unreachable while listing) ends it early, with
// the results so far and an error.
func Run(ctx context.Context, ids Lookup, resets Resetter, sel Selection, opts Options) (Summary, error) {
	targets, err := resolve(ctx, ids, sel)
	var sum Summary
	if err != nil && len(targets) == 0 {
		return sum, err
	}
	workers := max(1, opts.Concurrency)
	jobs := make(chan string)
	results := make(chan Result)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for id := range jobs {
				results <- resetOne(ctx, ids, resets, id, opts)
			}
		})
	}
	go func() {
		defer close(jobs)
		for _, t := range targets {
			select {
			case jobs <- t:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()
	for r := range results {
		sum.Results = append(sum.Results, r)
		if opts.Progress != nil {
			opts.Progress(len(sum.Results), len(targets), r)
		}
	}
	if ctx.Err() != nil {
		return sum, fmt.Errorf("interrupted after %d of %d identities; run again with --run-id %s to resume: %w",
			len(sum.Results), len(targets), opts.RunID, ctx.Err())
	}
	return sum, err
}

func resetOne(ctx context.Context, ids Lookup, resets Resetter, id string, opts Options) Result {
	if opts.DryRun {
		ident, err := ids.Identity(ctx, id)
		if err != nil {
			return Result{IdentityID: id, Outcome: "failed", Reason: reason(err)}
		}
		if len(ident.RecoveryAddresses) == 0 {
			return Result{IdentityID: id, Outcome: "failed", Reason: "no recovery address to mail"}
		}
		return Result{IdentityID: id, Outcome: "would-reset", Reason: "mail to " + ident.RecoveryAddresses[0]}
	}
	res, err := resets.Reset(ctx, recovery.Request{
		IdentityID: id,
		Trigger:    "admin",
		Message:    "admin-run:" + opts.RunID,
	}, opts.Policy)
	switch {
	case err != nil:
		return Result{IdentityID: id, Outcome: "failed", Reason: reason(err)}
	case res.Outcome == recovery.OutcomeDuplicate:
		return Result{IdentityID: id, Outcome: "skipped", Reason: "already reset by this run"}
	case res.Outcome == recovery.OutcomeCooldown:
		return Result{IdentityID: id, Outcome: "skipped", Reason: "reset within password.cooldown"}
	default:
		return Result{IdentityID: id, Outcome: "reset"}
	}
}

// reason is a short, secret-free explanation for the summary.
func reason(err error) string {
	switch {
	case errors.Is(err, kratosadmin.ErrNotFound):
		return "identity not found in Kratos"
	case errors.Is(err, recovery.ErrNoRecoveryAddress):
		return "no recovery address to mail"
	default:
		return err.Error()
	}
}

// resolve lists the identity ids a selection names.
func resolve(ctx context.Context, ids Lookup, sel Selection) ([]string, error) {
	switch {
	case sel.ID != "":
		return []string{sel.ID}, nil
	case sel.Email != "":
		ident, err := ids.FindByIdentifier(ctx, sel.Email)
		if err != nil {
			return nil, fmt.Errorf("find identity %s: %w", sel.Email, err)
		}
		return []string{ident.ID}, nil
	case sel.File != nil:
		raw, err := io.ReadAll(io.LimitReader(sel.File, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("read identity file: %w", err)
		}
		var out []string
		seen := map[string]bool{}
		for _, line := range strings.Split(string(raw), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") || seen[line] {
				continue
			}
			seen[line] = true
			out = append(out, line)
		}
		return out, nil
	case sel.All:
		var out []string
		token := ""
		size := sel.PageSize
		if size <= 0 {
			size = 250
		}
		for {
			page, next, err := ids.ListIdentityIDs(ctx, token, size)
			if err != nil {
				return out, fmt.Errorf("list identities after %d: %w", len(out), err)
			}
			out = append(out, page...)
			if next == "" || len(page) == 0 {
				return out, nil
			}
			token = next
		}
	default:
		return nil, errors.New("select identities with --id, --email, --file or --all")
	}
}
