// Package appargs turns MAN8S_APPLICATION_ARGS, one POSIX shell string holding the
// image's entrypoint and cmd, into the argv that man8s-init executes, and provides the
// inverse quoting used by mbctl when it writes that string.
//
// With a shell in the rootfs the string runs as `sh -c "exec <args>"`. Without one
// (distroless, scratch) it is split into words in-process with a POSIX shell parser;
// quoting and escapes are honoured, but nothing is expanded: a string that needs
// parameter expansion, command substitution, globbing or any other shell feature is
// rejected with an error naming the construct.
package appargs

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"mvdan.cc/sh/v3/syntax"
)

// ShellPath is where man8s-init looks for the image's POSIX shell.
const ShellPath = "/bin/sh"

// Command returns the argv to exec for args. When hasShell is true (the rootfs has a
// shell at ShellPath) it is [ShellPath, "-c", "exec " + args]; otherwise the words of
// args are parsed in-process exactly as the shell would split `exec <args>`, without
// any expansion. Empty args, or args that need a shell feature while hasShell is
// false, are an error.
func Command(args string, hasShell bool) ([]string, error) {
	if strings.TrimSpace(args) == "" {
		return nil, errors.New("application args are empty")
	}
	if hasShell {
		return []string{ShellPath, "-c", "exec " + args}, nil
	}
	argv, err := Words(args)
	if err != nil {
		return nil, fmt.Errorf("application args %q (no %s in the image to run them): %w", args, ShellPath, err)
	}
	return argv, nil
}

// Words splits args into words the way a POSIX shell splits `exec <args>`: quotes and
// backslash escapes are removed, nothing is expanded. Any construct that would need a
// shell to evaluate (expansions, globs, redirections, pipelines, lists, ...) is an
// error naming it.
func Words(args string) ([]string, error) {
	parser := syntax.NewParser(syntax.Variant(syntax.LangPOSIX), syntax.KeepComments(false))
	// Prefixing "exec" makes the parse match the shell path exactly: the first word of
	// args is an argument of exec, never an assignment or a reserved word.
	file, err := parser.Parse(strings.NewReader("exec "+args), "MAN8S_APPLICATION_ARGS")
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(file.Stmts) != 1 {
		return nil, errors.New("a list of several commands needs a shell")
	}
	stmt := file.Stmts[0]
	switch {
	case stmt.Background:
		return nil, errors.New("a background command (&) needs a shell")
	case stmt.Negated:
		return nil, errors.New("a negated command (!) needs a shell")
	case len(stmt.Redirs) > 0:
		return nil, errors.New("a redirection needs a shell")
	}
	call, ok := stmt.Cmd.(*syntax.CallExpr)
	if !ok {
		return nil, fmt.Errorf("a %s needs a shell", describeCommand(stmt.Cmd))
	}
	if len(call.Assigns) > 0 || len(call.Args) < 2 {
		return nil, errors.New("no command to run")
	}
	words := make([]string, 0, len(call.Args)-1)
	for i, w := range call.Args[1:] {
		s, err := literalWord(w)
		if err != nil {
			return nil, fmt.Errorf("word %d: %w", i, err)
		}
		words = append(words, s)
	}
	return words, nil
}

// describeCommand names a compound command for error messages.
func describeCommand(cmd syntax.Command) string {
	switch cmd.(type) {
	case *syntax.BinaryCmd:
		return "pipeline or && / || list"
	case *syntax.Subshell:
		return "subshell"
	case *syntax.Block:
		return "block { }"
	case *syntax.IfClause, *syntax.WhileClause, *syntax.ForClause, *syntax.CaseClause:
		return "control structure"
	case *syntax.FuncDecl:
		return "function definition"
	default:
		return fmt.Sprintf("%T", cmd)
	}
}

// literalWord returns the value of w after quote removal, or an error naming the
// first part of w that would need expansion.
func literalWord(w *syntax.Word) (string, error) {
	var b strings.Builder
	for i, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			s, err := unquotedLit(p.Value, i == 0)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		case *syntax.SglQuoted:
			if p.Dollar {
				return "", errors.New("$'...' quoting needs a shell")
			}
			b.WriteString(p.Value)
		case *syntax.DblQuoted:
			if p.Dollar {
				return "", errors.New(`$"..." quoting needs a shell`)
			}
			for _, inner := range p.Parts {
				lit, ok := inner.(*syntax.Lit)
				if !ok {
					return "", fmt.Errorf("%s inside double quotes needs a shell", describePart(inner))
				}
				b.WriteString(doubleQuotedLit(lit.Value))
			}
		default:
			return "", fmt.Errorf("%s needs a shell", describePart(part))
		}
	}
	return b.String(), nil
}

// describePart names a word part for error messages.
func describePart(part syntax.WordPart) string {
	switch part.(type) {
	case *syntax.ParamExp:
		return "parameter expansion ($VAR)"
	case *syntax.CmdSubst:
		return "command substitution ($(...) or `...`)"
	case *syntax.ArithmExp:
		return "arithmetic expansion $((...))"
	case *syntax.ProcSubst:
		return "process substitution"
	case *syntax.ExtGlob:
		return "extended glob"
	case *syntax.BraceExp:
		return "brace expansion"
	default:
		return fmt.Sprintf("%T", part)
	}
}

// unquotedLit removes backslash escapes from the raw text of an unquoted literal and
// rejects glob characters and a leading tilde, which the shell would expand.
func unquotedLit(raw string, wordStart bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			i++
			if raw[i] != '\n' { // backslash-newline is a line continuation
				b.WriteByte(raw[i])
			}
		case c == '*' || c == '?' || c == '[':
			return "", fmt.Errorf("glob %q needs a shell", string(c))
		case c == '~' && wordStart && i == 0:
			return "", errors.New("tilde expansion (~) needs a shell")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// doubleQuotedLit removes the backslashes that are special inside double quotes.
func doubleQuotedLit(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			switch raw[i+1] {
			case '$', '`', '"', '\\':
				i++
				b.WriteByte(raw[i])
				continue
			case '\n':
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Quote POSIX-quotes argv so that `sh -c "exec " + Quote(argv)` runs exactly argv and
// Command(Quote(argv), false) returns argv. Words made only of safe characters are
// left bare; others are single-quoted, with ' written as '\”. A word holding a newline
// or NUL cannot be carried in the env file, and one that is not valid UTF-8 cannot be
// parsed back; either is an error naming the word's index.
func Quote(argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("quote: empty argv")
	}
	var b strings.Builder
	for i, w := range argv {
		if strings.ContainsAny(w, "\n\x00") {
			return "", fmt.Errorf("quote: word %d (%q) holds a newline or NUL", i, w)
		}
		if !utf8.ValidString(w) {
			return "", fmt.Errorf("quote: word %d (%q) is not valid UTF-8", i, w)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		if isSafe(w) {
			b.WriteString(w)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(w, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String(), nil
}

// isSafe reports whether w needs no quoting in a POSIX shell.
func isSafe(w string) bool {
	if w == "" {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_-./:,+=@%", c) >= 0:
		default:
			return false
		}
	}
	return true
}
