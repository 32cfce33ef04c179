package envfile

import (
	"strings"
	"testing"
)

func TestProblems(t *testing.T) {
	in := strings.Join([]string{
		"# comment",
		"GOOD=1",
		"no equals sign",
		"=empty key",
		" LEADING=blank",
		"export FOO=1",
		"MY KEY=x",
		`QUOTED="hello"`,
		"SINGLE='x'",
		`HALF="x`,
		"JSON={\"a\":1}",
		"",
	}, "\n")
	f, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int
		key  string
		has  string
	}{
		{3, "", "has no '='"},
		{4, "", "empty key"},
		{5, "", "starts with a blank"},
		{6, "export FOO", `named "export FOO", not FOO`},
		{7, "MY KEY", "holds a blank"},
		{8, "QUOTED", "remove the quotes"},
		{9, "SINGLE", "quotes are part of it"},
	}
	got := f.Problems()
	if len(got) != len(want) {
		t.Fatalf("Problems = %v, want %d", got, len(want))
	}
	for i, w := range want {
		if got[i].Line != w.line || got[i].Key != w.key || !strings.Contains(got[i].Why, w.has) {
			t.Errorf("problem %d = %+v, want line %d key %q and %q", i, got[i], w.line, w.key, w.has)
		}
		// Values may be secrets: no message repeats one.
		if strings.Contains(got[i].Why, "hello") {
			t.Errorf("problem %d repeats a value: %s", i, got[i].Why)
		}
	}
}
