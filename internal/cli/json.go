package cli

import (
	"encoding/json"
	"io"
)

// writeJSON is the one exporter behind every --json flag: indented, one
// document, trailing newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
