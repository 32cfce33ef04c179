package man8env

import (
	"strings"
	"testing"
)

func TestCheckSecretName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"DB_PASSWORD", true},
		{"_x9", true},
		{"a", true},
		{"MAN8S", true},
		{"", false},
		{"9LIVES", false},
		{"DB-PASSWORD", false},
		{"DB PASSWORD", false},
		{"Ä", false},
		{".hidden", false},
		{"a/b", false},
		{"MAN8S_STOP_SIGNAL", false},
		{"MAN8S_ANYTHING", false},
	}
	for _, tt := range tests {
		if err := CheckSecretName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckSecretName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestCheckSecretValue(t *testing.T) {
	tests := []struct {
		value string
		want  string
	}{
		{"", ""},
		{"line one\nline two\n", ""},
		{"\xff binary is fine", ""},
		{strings.Repeat("s", MaxSecretSize), ""},
		{strings.Repeat("s", MaxSecretSize+1), "larger than the limit"},
		{"pw\x00zq", "NUL"},
	}
	for _, tt := range tests {
		err := CheckSecretValue("K", []byte(tt.value))
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckSecretValue(%.20q) = %v, want %q", tt.value, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "zq") {
			t.Errorf("the error shows the value: %v", err)
		}
	}
}
