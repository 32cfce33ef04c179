package envfile

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse checks that parsing never fails, that a file ending in a newline
// is written back byte for byte, that writing is stable, and that Set of any
// accepted key and value is read back unchanged.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		realWorld,
		"A=1",
		"A=1\r\nB=2\r\n",
		"A=1\r",
		"A=1\r\r\n",
		"#c\n\n x\n=v\n A=1\n",
		"K=\x00\xff\n",
		"\r\n\r",
	}
	for _, s := range seeds {
		f.Add(s, "KEY", "value")
	}
	f.Add("A=1\n", "A", "a\"b'c $d")
	f.Add("A=1\n", "#A", "")
	f.Fuzz(func(t *testing.T, in, key, value string) {
		file, err := Parse(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		out := file.Bytes()
		if in == "" || strings.HasSuffix(in, "\n") {
			if !bytes.Equal(out, []byte(in)) {
				t.Fatalf("round trip of %q gave %q", in, out)
			}
		} else if !bytes.Equal(out, []byte(in+"\n")) {
			t.Fatalf("round trip of %q gave %q, want a newline added", in, out)
		}

		again, err := Parse(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), out) {
			t.Fatalf("second round trip of %q differs", out)
		}

		if err := file.Set(key, value); err != nil {
			if ValidateKey(key) == nil && ValidateValue(key, value) == nil {
				t.Fatalf("Set(%q, %q) = %v although both validate", key, value, err)
			}
			if !bytes.Equal(file.Bytes(), out) {
				t.Fatalf("rejected Set changed the file")
			}
			return
		}
		edited, err := Parse(bytes.NewReader(file.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := edited.Get(key); !ok || got != value {
			t.Fatalf("after Set(%q, %q) on %q: Get = %q, %v", key, value, in, got, ok)
		}
		before, after := again.Map(), edited.Map()
		delete(before, key)
		delete(after, key)
		if len(before) != len(after) {
			t.Fatalf("Set(%q) changed other keys: %v -> %v", key, before, after)
		}
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("Set(%q) changed %q: %q -> %q", key, k, v, after[k])
			}
		}
		edited.Delete(key)
		if _, ok := edited.Get(key); ok {
			t.Fatalf("key %q still set after Delete", key)
		}
	})
}
