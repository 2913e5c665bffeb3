package demoui

import (
	"slices"
	"strings"
)

// page is what the template renders: the header and exactly one of Home,
// Flow or Error.
type page struct {
	Title      string
	MailpitURL string

	Home  *homeView
	Flow  *flowView
	Error *errorView
}

type homeView struct {
	LoggedIn  bool
	Email     string
	LogoutURL string
}

type errorView struct {
	Code    int
	Status  string
	Message string
	Reason  string
}

// flowView is a flow ready for the template.
type flowView struct {
	State    string
	Messages []message
	Forms    []form
	// MustChangePassword is set on a settings page the user was sent to
	// after logging in with a temporary password.
	MustChangePassword bool
	Links              []link
}

// form is one HTML form of a flow: Kratos's nodes of one method group,
// with the shared "default" nodes (CSRF token, identifier, traits).
type form struct {
	// Title is set when a flow has several forms (settings: profile and
	// password), so the user sees which one each button saves.
	Title  string
	group  string
	Action string
	Method string
	Nodes  []node
}

type link struct {
	Href, Text string
}

// SentEmail reports a recovery or verification flow that has sent its mail.
func (v *flowView) SentEmail() bool {
	return v.State == "sent_email"
}

func newFlowView(name string, f *flow) *flowView {
	v := &flowView{
		State:    f.State,
		Messages: f.UI.Messages,
		Forms:    splitForms(name, f.UI),
		Links:    flowLinks(name),
	}
	v.MustChangePassword = name == "settings" && f.State != "success" && f.Identity.mustChangePassword()
	if v.MustChangePassword {
		// The one form the user has to fill in comes first.
		if i := slices.IndexFunc(v.Forms, func(f form) bool { return f.group == "password" }); i > 0 {
			pw := v.Forms[i]
			v.Forms = slices.Insert(slices.Delete(v.Forms, i, i+1), 0, pw)
		}
	}
	return v
}

// splitForms gives each method group (profile, password, code, ...) a form
// of its own that also carries the "default" group's nodes. Kratos decides
// what to do by the submitted method, so one form per group keeps a
// settings page from submitting the profile along with a new password.
func splitForms(flowName string, u flowUI) []form {
	var groups []string
	seen := map[string]bool{"default": true}
	for _, n := range u.Nodes {
		if !seen[n.Group] {
			seen[n.Group] = true
			groups = append(groups, n.Group)
		}
	}
	if len(groups) <= 1 {
		return []form{{Action: u.Action, Method: u.Method, Nodes: u.Nodes}}
	}
	forms := make([]form, 0, len(groups))
	for _, g := range groups {
		f := form{Title: groupTitle(flowName, g), group: g, Action: u.Action, Method: u.Method}
		for _, n := range u.Nodes {
			if n.Group == "default" || n.Group == g {
				f.Nodes = append(f.Nodes, n)
			}
		}
		forms = append(forms, f)
	}
	return forms
}

func groupTitle(flowName, group string) string {
	switch {
	case flowName == "settings" && group == "password":
		return "Change password"
	case group == "code":
		return "Email code"
	case group == "":
		return ""
	}
	return strings.ToUpper(group[:1]) + group[1:]
}

func flowTitle(name string) string {
	switch name {
	case "login":
		return "Log in"
	case "registration":
		return "Create an account"
	case "recovery":
		return "Forgot your password?"
	case "verification":
		return "Verify your email address"
	case "settings":
		return "Account settings"
	}
	return name
}

// flowLinks are the ways on from a flow's page.
func flowLinks(name string) []link {
	switch name {
	case "login":
		return []link{{"/recovery", "Forgot your password?"}, {"/registration", "Create an account"}}
	case "registration":
		return []link{{"/login", "Already have an account? Log in"}}
	case "recovery", "verification":
		return []link{{"/login", "Back to log in"}}
	case "settings":
		return []link{{"/", "Back home"}}
	}
	return nil
}

// pageTemplate is the whole UI: a layout with the header and one section
// per page kind. Inline CSS only; no script (the CSP forbids any).
const pageTemplate = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · kratos-email-gateway demo</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 0 auto; padding: 1rem; color: #222; }
header { display: flex; gap: 1rem; border-bottom: 1px solid #ddd; padding-bottom: .5rem; margin-bottom: 1rem; }
form { border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin: 1rem 0; }
form h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
label { display: block; margin: .5rem 0; }
input:not([type=hidden]) { display: block; width: 100%; box-sizing: border-box; padding: .4rem; font: inherit; }
button { padding: .4rem 1rem; font: inherit; margin: .5rem .5rem 0 0; cursor: pointer; }
.msg { padding: .5rem .75rem; border-radius: 6px; margin: .5rem 0; background: #eef4ff; }
.msg.error { background: #fdecea; color: #8a1c12; }
.msg.success { background: #e8f6ec; color: #1d5e2c; }
.node-msg { font-size: .9rem; margin: .25rem 0; color: #555; }
.node-msg.error { color: #b3261e; }
ul.links { padding-left: 1.2rem; }
</style>
</head>
<body>
<header><a href="/">Home</a>{{with .MailpitURL}}<a href="{{.}}">Inbox (Mailpit)</a>{{end}}</header>
<main>
<h1>{{.Title}}</h1>
{{- if .Home}}{{template "home" .}}{{end}}
{{- if .Flow}}{{template "flow" .}}{{end}}
{{- with .Error}}{{template "error" .}}{{end}}
</main>
</body>
</html>

{{- /* home and flow get the whole page, so $.MailpitURL is at hand. */}}
{{- define "home"}}
{{- with .Home}}
{{- if .LoggedIn}}
<p>You are logged in as <strong id="whoami">{{.Email}}</strong>.</p>
<ul class="links">
<li><a href="/settings">Settings</a></li>
{{- with .LogoutURL}}
<li><a id="logout" href="{{.}}">Log out</a></li>
{{- end}}
</ul>
{{- else}}
<p id="logged-out">You are not logged in.</p>
<ul class="links">
<li><a href="/login">Log in</a></li>
<li><a href="/registration">Register</a></li>
<li><a href="/recovery">Forgot password</a></li>
{{- with $.MailpitURL}}
<li><a href="{{.}}">Inbox (Mailpit)</a></li>
{{- end}}
</ul>
{{- end}}
{{- end}}
{{- end}}

{{- define "flow"}}
{{- with .Flow}}
{{- if .MustChangePassword}}
<div class="msg error" id="password-change-required">You logged in with a temporary password. Choose a new password to continue.</div>
{{- end}}
{{- if .SentEmail}}
<div class="msg success" id="check-inbox">Check your inbox{{with $.MailpitURL}} (<a href="{{.}}">open Mailpit</a>){{end}}. If the mail holds a temporary password, <a href="/login">log in</a> with it; if it holds a code, enter it below.</div>
{{- end}}
{{- range .Messages}}
<div class="msg {{.Type}}" data-id="{{.ID}}">{{.Text}}</div>
{{- end}}
{{- range .Forms}}
<form action="{{.Action}}" method="{{.Method}}">
{{- with .Title}}<h2>{{.}}</h2>{{end}}
{{- range .Nodes}}{{template "node" .}}{{end}}
</form>
{{- end}}
<ul class="links">
{{- range .Links}}
<li><a href="{{.Href}}">{{.Text}}</a></li>
{{- end}}
</ul>
{{- end}}
{{- end}}

{{- define "node"}}
{{- $a := .Attributes}}
{{- if eq .Type "input"}}
{{- if eq $a.Type "hidden"}}
<input type="hidden" name="{{$a.Name}}" value="{{$a.ValueString}}">
{{- else if or (eq $a.Type "submit") (eq $a.Type "button")}}
<button type="submit" name="{{$a.Name}}" value="{{$a.ValueString}}"{{if $a.Disabled}} disabled{{end}}>{{.Label}}</button>
{{- else}}
<label>{{.Label}}
<input type="{{$a.Type}}" name="{{$a.Name}}"{{with $a.ValueString}} value="{{.}}"{{end}}{{if $a.Required}} required{{end}}{{if $a.Disabled}} disabled{{end}}{{with $a.Autocomplete}} autocomplete="{{.}}"{{end}}>
</label>
{{- end}}
{{- else if eq .Type "text"}}
{{- with $a.Text}}<p>{{.Text}}</p>{{end}}
{{- else if eq .Type "a"}}
<p><a href="{{$a.Href}}">{{with $a.Title}}{{.Text}}{{else}}{{$a.Href}}{{end}}</a></p>
{{- end}}
{{- range .Messages}}
<p class="node-msg {{.Type}}">{{.Text}}</p>
{{- end}}
{{- end}}

{{- define "error"}}
<div class="msg error">
{{- if .Code}}<strong>{{.Code}} {{.Status}}</strong>: {{end}}{{.Message}}
{{- with .Reason}}<br>{{.}}{{end}}
</div>
<p><a href="/">Back home</a></p>
{{- end}}
`
