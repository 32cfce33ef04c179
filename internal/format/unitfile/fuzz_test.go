package unitfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func addFileSeeds(f *testing.F, add func(string)) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "*.nspawn"))
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		add(string(data))
	}
	for _, s := range []string{
		"",
		"[Exec]\nA=1\\",
		"[Exec]\nA=1 \\\n# c\n  2\n\n",
		"[Exec]\r\nA=1\r\n",
		"[Exec]\rA=1\n\rB=2\x00C=3",
		"\xef\xbb\xbf[Exec]\n\xef\xbb\xbfA=1\n",
		"[A]\n[B]\n[A]\nK=\nK=v\n",
		"[A]\n\xef\xbb\xbfK=1\n\xef\xbb\xbfL=2\n",
		"[A]\nK=1\\\n\xef\xbb\xbfM\n\xef\xbb\xbfL=2\n",
	} {
		add(s)
	}
}

// others returns every assignment except those of section/key.
func others(f *File, section, key string) []string {
	var out []string
	for _, e := range f.entries {
		if e.kind == kindAssign && (e.section != section || e.key != key) {
			out = append(out, "["+e.section+"] "+e.key+"="+e.value)
		}
	}
	return out
}

// values returns the values of every assignment of section/key, empty ones
// included.
func values(f *File, section, key string) []string {
	var out []string
	for _, e := range f.entries {
		if e.kind == kindAssign && e.section == section && e.key == key {
			out = append(out, e.value)
		}
	}
	return out
}

// FuzzParse checks that any file that parses is written back byte for byte,
// and that Set, Add and Unset change exactly what they should: the edited
// file, parsed again, has the expected values for the edited key and the
// same assignments as before for every other key.
func FuzzParse(f *testing.F) {
	addFileSeeds(f, func(s string) {
		f.Add(s, uint8(0), "Exec", "Environment", "A=1")
		f.Add(s, uint8(1), "Files", "Bind", "/a:/b")
		f.Add(s, uint8(2), "Exec", "Parameters", "")
		// op%3 picks Set, Add or Unset; op&4 an existing key, op>>3 which.
		f.Add(s, uint8(4), "", "", "x")  // Add, first key
		f.Add(s, uint8(5), "", "", "")   // Unset, first key
		f.Add(s, uint8(12), "", "", "y") // Set, second key
		f.Add(s, uint8(20), "", "", "")  // Unset, third key
	})
	f.Fuzz(func(t *testing.T, in string, op uint8, section, key, value string) {
		file, err := Parse(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrSyntax) || !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("Parse(%q) = %v, want a syntax error naming a line", in, err)
			}
			return
		}
		if got := file.Bytes(); !bytes.Equal(got, []byte(in)) {
			t.Fatalf("round trip of %q gave %q", in, got)
		}
		// Half of the time, edit a key the file has.
		if op&4 != 0 {
			var existing []entry
			for _, e := range file.entries {
				if e.kind == kindAssign {
					existing = append(existing, e)
				}
			}
			if len(existing) > 0 {
				e := existing[int(op>>3)%len(existing)]
				section, key = e.section, e.key
			}
		}
		before := others(file, section, key)
		old := values(file, section, key)

		var want []string
		switch op % 3 {
		case 0:
			err = file.Set(section, key, value)
			if len(old) == 0 {
				want = []string{value}
			} else {
				want = append(slices.Clone(old[:len(old)-1]), value)
			}
		case 1:
			err = file.Add(section, key, value)
			want = append(slices.Clone(old), value)
		case 2:
			n := file.Unset(section, key)
			if n != len(old) {
				t.Fatalf("Unset = %d, want %d", n, len(old))
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("edit error %v does not wrap ErrInvalid", err)
			}
			if !bytes.Equal(file.Bytes(), []byte(in)) {
				t.Fatal("a rejected edit changed the file")
			}
			return
		}
		out := file.Bytes()
		edited, err := Parse(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("edited file does not parse: %v\n%q", err, out)
		}
		if got := values(edited, section, key); !slices.Equal(got, want) {
			t.Fatalf("after op %d on [%s] %s=%q: values %q, want %q\nin:  %q\nout: %q",
				op%3, section, key, value, got, want, in, out)
		}
		if after := others(edited, section, key); !slices.Equal(before, after) {
			t.Fatalf("edit of [%s] %s changed other assignments:\nbefore %q\nafter  %q\nin:  %q\nout: %q",
				section, key, before, after, in, out)
		}
		if !bytes.Equal(edited.Bytes(), out) {
			t.Fatal("edited file does not round-trip")
		}
	})
}

// FuzzEnvironment checks that QuoteEnvironment's output parses back to
// exactly KEY=VALUE, also through a settings file, and that
// ParseEnvironment never fails badly on arbitrary input.
func FuzzEnvironment(f *testing.F) {
	for _, v := range awkward {
		f.Add("KEY", v)
	}
	f.Add(`"A=1" B='2`, "")
	f.Fuzz(func(t *testing.T, key, value string) {
		if words, err := ParseEnvironment(value); err == nil {
			for _, w := range words {
				if k, _, ok := strings.Cut(w, "="); !ok || k == "" {
					t.Fatalf("ParseEnvironment(%q) returned %q", value, w)
				}
			}
		}
		q, err := QuoteEnvironment(key, value)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("QuoteEnvironment error %v does not wrap ErrInvalid", err)
			}
			return
		}
		words, err := ParseEnvironment(q)
		if err != nil {
			t.Fatalf("ParseEnvironment(%q): %v", q, err)
		}
		want := key + "=" + value
		if len(words) != 1 || words[0] != want {
			t.Fatalf("QuoteEnvironment(%q, %q) = %q, parses to %q", key, value, q, words)
		}
		var file File
		if err := file.Add("Exec", "Environment", q); err != nil {
			t.Fatalf("Add(%q): %v", q, err)
		}
		g, err := Parse(bytes.NewReader(file.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := g.Get("Exec", "Environment")
		if words, err := ParseEnvironment(v); err != nil || len(words) != 1 || words[0] != want {
			t.Fatalf("through a file: %q, %v", words, err)
		}
	})
}
