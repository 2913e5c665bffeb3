package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// chromiumBin is Debian's chromium package, which scripts/deps.sh installs.
	chromiumBin = "/usr/bin/chromium"
	// demoUI is where Kratos's ui_url values (configs/kratos/kratos.yml)
	// send the browser, so the demo UI must listen exactly there.
	demoUI = "http://127.0.0.1:4455"
	// stepTimeout bounds one step of a journey: a page load through Kratos
	// and its hooks, never a mail (waitMails waits for those).
	stepTimeout = 30 * time.Second
)

// browser is one tab of a headless Chromium that a test drives through a
// journey, saving a screenshot after every step.
type browser struct {
	t *testing.T
	// ctx is the tab. It has no deadline: the first action binds the
	// browser's life to its context, so each step derives its own.
	ctx   context.Context
	shots string
}

// newBrowser starts Chromium with a fresh profile and stops it when the
// test ends. A missing Chromium fails the test rather than skipping it:
// CI installs it, and a skipped journey would pass unnoticed.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if !isExecutable(chromiumBin) {
		t.Fatalf("Chromium is not installed at %s: run scripts/deps.sh chromium (or scripts/deps.sh, which installs every dependency of the tests)", chromiumBin)
	}
	shots := filepath.Join(env.logDir, "screenshots")
	// Registered before the browser's cleanup, so it runs after Chromium
	// exited and stopped writing its profile.
	profile := t.TempDir()
	logFile, err := os.Create(filepath.Join(env.logDir, "chromium-"+strings.ReplaceAll(t.Name(), "/", "_")+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumBin),
		chromedp.Headless,
		// Tests run as root, where Chromium's sandbox cannot start.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1024, 900),
		// The machine's network is closed: without these, Chromium keeps
		// calling Google's services and floods the log with refused
		// connections.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.CombinedOutput(logFile),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	// Cancelling the allocator waits for Chromium to exit.
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium (%s): %v; its output is in %s", chromiumBin, err, logFile.Name())
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

// step runs actions within stepTimeout and then saves a screenshot as
// <shot>.png, also when the step failed: it shows what the browser saw.
func (b *browser) step(shot string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	err := chromedp.Do(ctx, actions...)
	b.screenshot(shot)
	if err != nil {
		b.t.Fatalf("step %s: %v\n%s", shot, err, b.describe())
	}
}

// screenshot saves the whole page as a PNG (quality 100 means PNG).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	// Made here rather than once: another run of the suite starts by
	// emptying .artifacts.
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
}

// location is the URL the tab shows.
func (b *browser) location() string {
	b.t.Helper()
	return run(b, chromedp.Location())
}

// text is the visible text of the first element matching a CSS selector.
func (b *browser) text(css string) string {
	b.t.Helper()
	return run(b, chromedp.Text(chromedp.CSS(css)))
}

// run runs one action with a value within stepTimeout.
func run[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%v\n%s", err, b.describe())
	}
	return v
}

// describe says where the browser is and what it shows, for a failure.
func (b *browser) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return fmt.Sprintf("browser at %s showing:\n%s", loc, text)
}

// showsText waits until the page shows s, for pages that are not ours and
// have no selector to wait for.
func showsText(s string) chromedp.Action[chromedp.Void] {
	lit, _ := json.Marshal(s) // a JSON string is a JavaScript string literal
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.body && document.body.innerText.includes(%s)`, lit),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout))
}
