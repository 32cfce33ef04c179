// Package manual writes mbctl's manual pages at build time: a man(1) page
// per command of the cobra tree (cobra/doc renders the tree's Short, Long,
// flags and Example), and man(5) pages for the files mbctl reads and
// writes: mbctl.toml(5) from the configuration's own keys and comments,
// man8env.env(5) from the keys of the man8env contract, and
// man8s.nspawn(5) for the settings file of a machine. The pages are made
// from the code they describe, so they cannot fall behind it; `make man`
// runs cmd/gen-docs, and `make install` installs what it wrote.
package manual

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// Options say how the pages are stamped.
type Options struct {
	// Date is the pages' date: the commit's time for a reproducible
	// build (SOURCE_DATE_EPOCH), never the zero time.
	Date time.Time
	// Version is mbctl's version, shown in the pages' footer.
	Version string
}

// manualName is the title of the manual the pages belong to (the centre of
// the header line).
const manualName = "Man8S Manual"

// Write writes every page into dir (which must exist) and returns the
// pages' file names, sorted. root is mbctl's command tree, which Write
// changes: the root command's description gains a paragraph that names
// the man(5) pages, its texts become markdown, and it gets the completion
// command that cobra adds when mbctl runs.
func Write(dir string, root *cobra.Command, opts Options) ([]string, error) {
	if opts.Date.IsZero() {
		return nil, errors.New("manual pages: no date (set SOURCE_DATE_EPOCH to the commit's time)")
	}
	root.DisableAutoGenTag = true
	root.Long += "\n\n" + filesSection
	root.InitDefaultCompletionCmd() // cobra adds it when mbctl runs; it has pages too
	toMarkdown(root, map[*pflag.Flag]bool{})
	var errs []error
	for _, c := range commands(root) {
		header := &doc.GenManHeader{Section: "1", Date: &opts.Date, Source: "mbctl " + opts.Version, Manual: manualName}
		var b bytes.Buffer
		if err := doc.GenMan(c, header, &b); err != nil {
			errs = append(errs, fmt.Errorf("manual page of %s: %w", c.CommandPath(), err))
			continue
		}
		path := filepath.Join(dir, pageName(c))
		if err := os.WriteFile(path, asciiRoff(b.Bytes()), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("writing manual page %s: %w", path, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, p := range filePages() {
		src, err := p.markdown()
		if err != nil {
			return nil, fmt.Errorf("manual page %s(5): %w", p.name, err)
		}
		head := fmt.Sprintf("%% %q %q %q %q %q\n", strings.ToUpper(p.name), "5", opts.Date.Format("Jan 2006"), "mbctl "+opts.Version, manualName)
		path := filepath.Join(dir, p.name+".5")
		if err := os.WriteFile(path, asciiRoff(md2man.Render([]byte(head+src))), 0o644); err != nil {
			return nil, fmt.Errorf("writing manual page %s: %w", path, err)
		}
	}
	return Pages(root), nil
}

// Pages returns the file names Write writes for root, sorted: one
// NAME-VERB.1 per available command (hidden ones have none), and the
// man(5) pages.
func Pages(root *cobra.Command) []string {
	var out []string
	for _, c := range commands(root) {
		out = append(out, pageName(c))
	}
	for _, p := range filePages() {
		out = append(out, p.name+".5")
	}
	slices.Sort(out)
	return out
}

// commands returns root and every command under it that has a page:
// those cobra lists in help (not hidden, not deprecated).
func commands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && !c.IsAdditionalHelpTopicCommand() {
			out = append(out, commands(c)...)
		}
	}
	return out
}

// pageName is the file of c's page: "mbctl-machines-pull.1".
func pageName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
}

// toMarkdown turns the plain text of c's tree (descriptions, usage lines,
// flag usages), which cobra/doc hands to markdown as it is, into markdown
// that says the same: indented lines stay verbatim, and <ARG>, *, _ and
// backquotes are text, not HTML or emphasis. Each flag is changed once
// (seen), also where subcommands inherit it. The examples are code
// blocks already.
func toMarkdown(c *cobra.Command, seen map[*pflag.Flag]bool) {
	c.Short = escapeText(c.Short)
	c.Long = plainMarkdown(c.Long)
	if name, rest, ok := strings.Cut(c.Use, " "); ok {
		c.Use = name + " " + escapeText(rest)
	}
	for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if !seen[f] {
				seen[f] = true
				f.Usage = escapeText(f.Usage)
			}
		})
	}
	for _, sub := range c.Commands() {
		toMarkdown(sub, seen)
	}
}

// plainMarkdown converts plain text: paragraphs stay paragraphs, and a
// run of indented lines (a table, a list, a command) becomes a code block.
func plainMarkdown(s string) string {
	var b strings.Builder
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			b.WriteString(escapeLine(line) + "\n")
			continue
		}
		if i > 0 && strings.TrimSpace(lines[i-1]) != "" {
			b.WriteString("\n") // a code block needs a blank line before it
		}
		b.WriteString("```\n")
		for ; i < len(lines) && (strings.HasPrefix(lines[i], " ") || strings.HasPrefix(lines[i], "\t")); i++ {
			b.WriteString(lines[i] + "\n")
		}
		b.WriteString("```\n\n")
		i--
	}
	return strings.TrimRight(b.String(), "\n")
}

// escapeLine escapes a line of text, and what markdown would read at its
// start as a heading, a list item or a quote.
func escapeLine(line string) string {
	line = escapeText(line)
	if line != "" && strings.ContainsRune("#>-+=", rune(line[0])) {
		line = `\` + line
	}
	if i := strings.IndexFunc(line, func(r rune) bool { return r < '0' || r > '9' }); i > 0 && (line[i] == '.' || line[i] == ')') {
		line = line[:i] + `\` + line[i:]
	}
	return line
}

// escapeText makes markdown's inline markers plain characters, outside
// `code spans`, which stay (markdown shows them in bold).
func escapeText(s string) string {
	esc := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `_`, `\_`, `<`, `\<`, `[`, `\[`)
	var b strings.Builder
	for {
		start := strings.IndexByte(s, '`')
		end := -1
		if start >= 0 {
			end = strings.IndexByte(s[start+1:], '`')
		}
		if end < 0 {
			b.WriteString(strings.ReplaceAll(esc.Replace(s), "`", "\\`"))
			return b.String()
		}
		end += start + 1
		b.WriteString(esc.Replace(s[:start]))
		b.WriteString(s[start : end+1])
		s = s[end+1:]
	}
}

// asciiRoff writes every non-ASCII character of a roff page as a groff
// escape (\[u2713] for ✓), which every formatter reads whatever its
// input encoding.
func asciiRoff(page []byte) []byte {
	var b bytes.Buffer
	for _, r := range string(page) {
		if r < 0x80 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\[u%04X]`, r)
		}
	}
	return b.Bytes()
}

// filesSection ends mbctl(1)'s description: where the formats are.
var filesSection = strings.TrimSpace(`
Files: the configuration, ` + "`/etc/man8s/mbctl.toml`" + `, is described in
mbctl.toml(5); a machine's two files, its environment and its
systemd-nspawn settings, in man8env.env(5) and man8s.nspawn(5).`)

// page is one man(5) page, written in markdown for md2man.
type page struct {
	name     string
	markdown func() (string, error)
}

func filePages() []page {
	return []page{
		{"mbctl.toml", configPage},
		{"man8env.env", envPage},
		{"man8s.nspawn", settingsPage},
	}
}

// section is a markdown heading and its text.
func section(b *bytes.Buffer, title, text string) {
	fmt.Fprintf(b, "# %s\n%s\n\n", title, strings.TrimSpace(text))
}

// item is one entry of a definition list: a bold term and its text.
func item(b *bytes.Buffer, term, text string) {
	fmt.Fprintf(b, "**%s**\n: %s\n\n", escapeText(term), strings.TrimSpace(text))
}
