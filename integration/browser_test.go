package integration

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserRecoveryJourney clicks the temporary-password journey in a
// real browser, through the demo UI on Kratos's browser flows: recover,
// read the mail, log in with the temporary password, be forced to choose a
// new one, log out and log in with it. Screenshots of every step land in
// .artifacts/screenshots/.
func TestBrowserRecoveryJourney(t *testing.T) {
	startHost(t, hostOptions{enabled: true, demoUI: true})
	// The gateway answers /health/ready once its own listener serves; the
	// demo UI's listener comes up right after it.
	if err := waitHTTP(demoUI+"/", stepTimeout); err != nil {
		t.Fatalf("demo UI not up: %v", err)
	}
	email := uniqueEmail(t)
	const chosenPassword = "Browser-Chosen-Password-8157"
	id := createIdentity(t, email, oldPassword)
	b := newBrowser(t)

	b.step("01-recovery-form",
		chromedp.Navigate(demoUI+"/recovery"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"]`)),
	)
	b.step("02-recovery-sent",
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="code"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#check-inbox`)),
	)
	if got := b.text(`#check-inbox`); !strings.Contains(got, "Check your inbox") {
		t.Errorf("recovery page after submit says %q", got)
	}

	m := waitMails(t, email, 1)[0]
	temp := temporaryPassword(t, m)
	// Mailpit's own rendering of the mail's HTML part. (Its single-page
	// app at /view/<id> needs a bundle that `go install` does not build.)
	b.step("03-mailpit-message",
		chromedp.Navigate(env.mailpitAPI+"/view/"+m.ID+".html"),
		showsText(temp),
	)

	b.step("04-login-temporary-password",
		chromedp.Navigate(demoUI+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="identifier"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="identifier"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), temp),
	)
	// Kratos logs the user in and returns them home; home sees
	// password_change_required and sends them on to the settings flow.
	b.step("05-forced-password-change",
		chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#password-change-required`)),
	)
	if loc := b.location(); !strings.HasPrefix(loc, demoUI+"/settings?flow=") {
		t.Errorf("after the login with the temporary password the browser is at %s, want the settings flow", loc)
	}

	b.step("06-password-changed",
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), chosenPassword),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
		// 1050001: Kratos's "Your changes have been saved!"
		chromedp.WaitVisible(chromedp.CSS(`.msg.success[data-id="1050001"]`)),
	)
	if meta := getIdentity(t, id.ID).MetadataPublic; meta["password_change_required"] != nil {
		t.Errorf("metadata_public after the change = %v, want the flag cleared", meta)
	}

	// With the flag cleared, home no longer redirects.
	b.step("07-home-logged-in",
		chromedp.Navigate(demoUI+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#whoami`)),
	)
	if got := b.text(`#whoami`); got != email {
		t.Errorf("home shows %q logged in, want %s", got, email)
	}

	b.step("08-logged-out",
		chromedp.Click(chromedp.CSS(`#logout`)),
		chromedp.WaitVisible(chromedp.CSS(`#logged-out`)),
	)

	b.step("09-login-new-password",
		chromedp.Navigate(demoUI+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="identifier"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="identifier"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), chosenPassword),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#whoami`)),
	)
	if got := b.text(`#whoami`); got != email {
		t.Errorf("home after logging in with the new password shows %q, want %s", got, email)
	}
}
