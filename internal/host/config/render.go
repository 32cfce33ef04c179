package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Entry is one key of the effective configuration.
type Entry struct {
	// Section and Key name it in the file: [Section] Key = ...
	Section, Key string
	// Value is a string, a []string or a map[string][]string; never a nil
	// slice or map.
	Value any
	// Description says what the key is for.
	Description string
	// Source is where the value came from: "FILE:LINE" or "default".
	Source string
}

// Dotted returns the entry's dotted key ("paths.cache").
func (e Entry) Dotted() string { return e.Section + "." + e.Key }

// Entries lists every key of cfg in file order, with where its value came
// from.
func Entries(cfg Config, origin Origin) []Entry {
	var out []Entry
	top := reflect.ValueOf(cfg)
	for i := range top.NumField() {
		section := top.Type().Field(i).Tag.Get("toml")
		sv := top.Field(i)
		for j := range sv.NumField() {
			f := sv.Type().Field(j)
			key := f.Tag.Get("toml")
			v := sv.Field(j)
			switch {
			case v.Kind() == reflect.Slice && v.IsNil():
				v = reflect.MakeSlice(v.Type(), 0, 0)
			case v.Kind() == reflect.Map && v.IsNil():
				v = reflect.MakeMap(v.Type())
			}
			out = append(out, Entry{
				Section:     section,
				Key:         key,
				Value:       v.Interface(),
				Description: f.Tag.Get("comment"),
				Source:      origin.Source(section + "." + key),
			})
		}
	}
	return out
}

// Render formats cfg as a TOML file that Load reads back unchanged. Each key
// carries a comment saying what it is and where its value came from.
func Render(cfg Config, origin Origin) []byte {
	var b bytes.Buffer
	switch {
	case origin.Path == "":
	case origin.Found:
		fmt.Fprintf(&b, "# mbctl configuration, read from %s\n", origin.Path)
	default:
		fmt.Fprintf(&b, "# mbctl configuration: %s does not exist, all values are defaults\n", origin.Path)
	}
	section := ""
	for _, e := range Entries(cfg, origin) {
		if e.Section != section {
			section = e.Section
			fmt.Fprintf(&b, "\n[%s]\n", section)
		}
		fmt.Fprintf(&b, "# %s (%s)\n", e.Description, e.Source)
		fmt.Fprintf(&b, "%s = %s\n", e.Key, tomlValue(reflect.ValueOf(e.Value)))
	}
	return b.Bytes()
}

// tomlValue formats the value kinds Config uses.
func tomlValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return tomlString(v.String())
	case reflect.Int, reflect.Int64, reflect.Int32:
		return fmt.Sprint(v.Int())
	case reflect.Bool:
		return fmt.Sprint(v.Bool())
	case reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = tomlValue(v.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		items := make([]string, len(keys))
		for i, k := range keys {
			items[i] = tomlString(k) + " = " + tomlValue(v.MapIndex(reflect.ValueOf(k)))
		}
		if len(items) == 0 {
			return "{}"
		}
		return "{ " + strings.Join(items, ", ") + " }"
	}
	return tomlString(fmt.Sprint(v.Interface()))
}

// tomlString quotes s as a TOML basic string. Go's quoting (%q) is not
// TOML: it writes \a, \v and \x.. escapes, which TOML rejects.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
