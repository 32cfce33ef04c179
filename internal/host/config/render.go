package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

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
	top := reflect.ValueOf(cfg)
	for i := range top.NumField() {
		section := top.Type().Field(i).Tag.Get("toml")
		fmt.Fprintf(&b, "\n[%s]\n", section)
		sv := top.Field(i)
		for j := range sv.NumField() {
			f := sv.Type().Field(j)
			key := f.Tag.Get("toml")
			fmt.Fprintf(&b, "# %s (%s)\n", f.Tag.Get("comment"), origin.Source(section+"."+key))
			fmt.Fprintf(&b, "%s = %s\n", key, tomlValue(sv.Field(j)))
		}
	}
	return b.Bytes()
}

// tomlValue formats the value kinds Config uses.
func tomlValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
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
			items[i] = strconv.Quote(k) + " = " + tomlValue(v.MapIndex(reflect.ValueOf(k)))
		}
		if len(items) == 0 {
			return "{}"
		}
		return "{ " + strings.Join(items, ", ") + " }"
	}
	return fmt.Sprintf("%q", fmt.Sprint(v.Interface()))
}
