package mailtmpl

import (
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strconv"
	"strings"
	"unicode/utf8"
)

// describeFailure returns the error for template t failing with err on real
// data (Render, not New's check with SampleData).
//
// The message of text/template is not used: the part after its position
// is formatted from the values the template was running on, such as "range
// can't iterate over <value>", "non-comparable type <value>: ..." or "error
// calling <f>: <the error or panic of f, which may quote its argument>", so
// it may hold the password, the recipient or a trait. Redacting the Data's
// strings from it would not be enough: a template can derive a value found
// in none of them (slice .Password 1, printf, html or urlquery of a trait, a
// number printed differently), and the message would quote that. So the
// error is built only from what comes from the config, never from the data:
//   - the origin (the config key, and the file in template.dir);
//   - the line, taken as digits from the head of the message,
//     "template: NAME:LINE:COL:", which text/template writes from the
//     template's own position before any value;
//   - the action at that line and column, quoted from the template source;
//   - a fixed description, picked by the first known phrase in the message
//     (see execProblems), and the name of the function called, if it is
//     one of the fixed set in callees. A value that happens to contain a
//     phrase can at worst pick the wrong description, never put itself
//     into the error.
//
// An *htmltemplate.Error is kept as it is: html/template finds those by
// analysing the template alone, before any data is read (and New's check
// would have found it first).
func describeFailure(t tmpl, err error) error {
	if he, ok := errors.AsType[*htmltemplate.Error](err); ok {
		return fmt.Errorf("render %s: %w", t.origin, he)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "render %s: ", t.origin)
	msg := err.Error()
	if line, col, ok := execPosition(t.name, msg); ok {
		fmt.Fprintf(&b, "line %d", line)
		if action, ok := actionAt(t.text, line, col); ok {
			fmt.Fprintf(&b, ", at %s", action)
		}
		b.WriteString(": ")
	}
	b.WriteString(execProblem(msg))
	return errors.New(b.String())
}

// execPosition returns the line and byte column in the head of an
// execution error of the template name, "template: NAME:LINE:COL: ...".
func execPosition(name, msg string) (line, col int, ok bool) {
	rest, ok := strings.CutPrefix(msg, "template: "+name+":")
	if !ok {
		return 0, 0, false
	}
	lineText, rest, _ := strings.Cut(rest, ":")
	colText, _, _ := strings.Cut(rest, ":")
	line, lok := number(lineText)
	col, cok := number(colText)
	if !lok || !cok || line < 1 {
		return 0, 0, false
	}
	return line, col, true
}

// number parses s if it is made of 1 to 9 ASCII digits.
func number(s string) (int, bool) {
	if s == "" || len(s) > 9 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// maxActionLen bounds the action quoted in an error.
const maxActionLen = 60

// actionAt returns the action {{...}} of text around the byte column col of
// line (1-based), on one line and shortened to maxActionLen bytes.
func actionAt(text string, line, col int) (string, bool) {
	start := 0
	for range line - 1 {
		i := strings.IndexByte(text[start:], '\n')
		if i < 0 {
			return "", false
		}
		start += i + 1
	}
	pos := start + col
	if pos > len(text) {
		return "", false
	}
	// The position is that of the node at fault, inside the action; it can
	// be that of the action itself, at its "{{".
	open := strings.LastIndex(text[:min(pos+2, len(text))], "{{")
	if open < 0 {
		return "", false
	}
	n := strings.Index(text[open:], "}}")
	if n < 0 || open+n+2 <= pos {
		return "", false
	}
	action := strings.Join(strings.Fields(text[open:open+n+2]), " ")
	if len(action) > maxActionLen {
		cut := maxActionLen
		for cut > 0 && !utf8.RuneStart(action[cut]) {
			cut--
		}
		action = action[:cut] + "..."
	}
	return action, true
}

// execProblems describes the execution errors of text/template (which
// html/template runs too) by a phrase of their message, in the words of a
// template author. Descriptions are fixed text: see describeFailure.
var execProblems = []struct{ phrase, problem string }{
	{"map has no entry for key", "it reads a key that this identity's data lacks (read optional traits with index)"},
	{"nil data; no entry for key", "it reads a key of a null value"},
	{"can't evaluate field", "it reads a field of a value that has no such field (a trait of another type than in the sample?)"},
	{"nil pointer evaluating", "it reads a field of a null value"},
	{"wrong type for value", "a value has the wrong type for where it is used"},
	{"invalid value; expected", "a value is missing where a function or method needs one"},
	{"dereference of nil pointer", "a value is null where a function or method needs one"},
	{"cannot assign nil to", "a value is null where a function or method needs one"},
	{"range can't iterate over", "range over a value that is not a list, a map or a number"},
	{"iterate over more than one variable", "range with two variables over a value that yields one"},
	{"if/with can't use", "if or with on a value that is neither true nor false"},
	{"index out of range", "an index is out of range"},
	{"cannot index slice/array with", "an index is not an integer"},
	{"can't index item of type", "it indexes a value that cannot be indexed"},
	{"index of nil pointer", "it indexes a null value"},
	{"index of untyped nil", "it indexes a null value"},
	{"invalid slice index", "the indexes of a slice are out of order"},
	{"can't slice item of type", "it slices a value that cannot be sliced"},
	{"slice of nil pointer", "it slices a null value"},
	{"slice of untyped nil", "it slices a null value"},
	{"cannot 3-index slice a string", "a slice of a string has three indexes"},
	{"len of", "len of a value that has no length"},
	{"incompatible types for comparison", "it compares values of different types"},
	{"non-comparable type", "it compares values that cannot be compared"},
	{"invalid type for comparison", "it compares values that cannot be compared"},
	{"missing argument for comparison", "a comparison lacks an argument"},
	{"wrong number of args", "a function or method gets the wrong number of arguments"},
	{"non-function", "call of a value that is not a function"},
	{"call of nil", "call of a null value"},
	{"exceeded maximum template depth", "templates call each other too deeply"},
}

// callees are the functions a template can call by name: the builtins of
// text/template and those of funcs. Methods are not listed: their names are
// whatever the data's types offer.
var callees = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Fields("and call html index slice js len not or print printf println urlquery eq ge gt le lt ne") {
		m[name] = true
	}
	for name := range funcs() {
		m[name] = true
	}
	return m
}()

// execProblem describes the execution error msg with fixed text.
func execProblem(msg string) string {
	callee := ""
	const calling = "error calling "
	if i := strings.Index(msg, calling); i >= 0 {
		callee = "a function or method"
		if name, _, ok := strings.Cut(msg[i+len(calling):], ":"); ok && callees[name] {
			callee = name
		}
	}
	best, problem := -1, ""
	for _, p := range execProblems {
		if i := strings.Index(msg, p.phrase); i >= 0 && (best < 0 || i < best) {
			best, problem = i, p.problem
		}
	}
	switch {
	case problem == "" && callee != "":
		return callee + " failed on this identity's data (its message is withheld, as it may quote the data)"
	case problem == "":
		return "it failed on this identity's data"
	case callee != "":
		return "calling " + callee + ": " + problem
	}
	return problem
}
