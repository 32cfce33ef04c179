package unitfile

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEnvironment(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  \t ", nil},
		{"A=1", []string{"A=1"}},
		{"A=1 B=2\tC=3  ", []string{"A=1", "B=2", "C=3"}},
		{`"PATH=/usr/bin:/bin"`, []string{"PATH=/usr/bin:/bin"}},
		{`"A=x y" B='p q'`, []string{"A=x y", "B=p q"}},
		{`A="x y"z`, []string{"A=x yz"}},
		{`A='say "hi"'`, []string{`A=say "hi"`}},
		{`"A=it's"`, []string{`A=it's`}},
		{`"A=a"'"'"b"`, []string{`A=a"b`}},
		{`A=back\slash "B=\"`, []string{`A=back\slash`, `B=\`}},
		{`A=$HOME B=%n C=100%`, []string{"A=$HOME", "B=%n", "C=100%"}},
		{`A= B=""`, []string{"A=", "B="}},
		{"A=\xff", []string{"A=\xff"}},
	}
	for _, tt := range tests {
		got, err := ParseEnvironment(tt.in)
		if err != nil {
			t.Errorf("ParseEnvironment(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseEnvironment(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseEnvironmentErrors(t *testing.T) {
	tests := []struct {
		in, msg string
	}{
		{`"A=1`, `word 1: unclosed " quote`},
		{`A=1 B='x`, `word 2: unclosed ' quote`},
		{`A=1 B`, "word 2: not a KEY=VALUE"},
		{`=x`, "word 1: not a KEY=VALUE"},
		{`""`, "word 1: not a KEY=VALUE"},
	}
	for _, tt := range tests {
		_, err := ParseEnvironment(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseEnvironment(%q) = %v, want an error containing %q", tt.in, err, tt.msg)
		}
	}
}

// awkward holds values that are hard to quote.
var awkward = []string{
	"",
	"plain",
	"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"with spaces",
	"  leading and trailing  ",
	"tab\there",
	`"double"`,
	`'single'`,
	`it's "mixed" '"'`,
	`"`,
	`'`,
	`""''`,
	`back\slash`,
	`trailing\`,
	`\"`,
	`C:\Program Files\`,
	"$HOME ${PATH} $(id)",
	"100% %n %% %",
	"a=b=c",
	"# not a comment ; neither",
	"Grüße, 世界",
	"\v\f",
}

func TestQuoteEnvironmentRoundTrip(t *testing.T) {
	for _, v := range awkward {
		for _, k := range []string{"K", "GREETING", "lower_case", "odd key", `q"k`} {
			q, err := QuoteEnvironment(k, v)
			if err != nil {
				t.Errorf("QuoteEnvironment(%q, %q): %v", k, v, err)
				continue
			}
			got, err := ParseEnvironment(q)
			if err != nil {
				t.Errorf("ParseEnvironment(%q) of QuoteEnvironment(%q, %q): %v", q, k, v, err)
				continue
			}
			if want := []string{k + "=" + v}; !cmp.Equal(want, got) {
				t.Errorf("QuoteEnvironment(%q, %q) = %q, parses to %q", k, v, q, got)
			}
		}
	}
}

// TestQuoteEnvironmentThroughFile writes quoted assignments into a settings
// file and reads them back through the unit-file parser, so that the
// unit-file layer (whitespace stripping, continuations) is covered too.
func TestQuoteEnvironmentThroughFile(t *testing.T) {
	f := mustParse(t, "[Exec]\nBoot=no\n")
	var want []string
	for i, v := range awkward {
		k := "V" + strings.Repeat("X", i)
		q, err := QuoteEnvironment(k, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Add("Exec", "Environment", q); err != nil {
			t.Fatalf("Add(%q): %v", q, err)
		}
		want = append(want, k+"="+v)
	}
	g := mustParse(t, string(f.Bytes()))
	var got []string
	for _, val := range g.GetAll("Exec", "Environment") {
		words, err := ParseEnvironment(val)
		if err != nil {
			t.Fatalf("ParseEnvironment(%q): %v", val, err)
		}
		got = append(got, words...)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("environment mismatch (-want +got):\n%s", diff)
	}
}

func TestQuoteEnvironment(t *testing.T) {
	tests := []struct {
		key, value, want string
	}{
		{"PATH", "/usr/bin:/bin", "PATH=/usr/bin:/bin"},
		{"EMPTY", "", "EMPTY="},
		{"A", "x y", `"A=x y"`},
		{"A", `say "hi"`, `"A=say "'"'"hi"'"'""`},
		{"A", `C:\`, `"A=C:\"`},
		{"A", "100%", "A=100%"},
	}
	for _, tt := range tests {
		got, err := QuoteEnvironment(tt.key, tt.value)
		if err != nil || got != tt.want {
			t.Errorf("QuoteEnvironment(%q, %q) = %q, %v; want %q", tt.key, tt.value, got, err, tt.want)
		}
	}
}

func TestQuoteEnvironmentRejects(t *testing.T) {
	tests := []struct {
		key, value string
	}{
		{"", "x"},
		{"A=B", "x"},
		{"A\n", "x"},
		{"A", "secret\nline"},
		{"A", "secret\r"},
		{"A", "secret\x00"},
		{"A", "secret\xff"},
		{"\xff", "x"},
	}
	for _, tt := range tests {
		_, err := QuoteEnvironment(tt.key, tt.value)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("QuoteEnvironment(%q, %q) = %v, want ErrInvalid", tt.key, tt.value, err)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q shows the value", err)
		}
	}
}
