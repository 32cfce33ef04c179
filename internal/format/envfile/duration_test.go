package envfile

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"", 300 * time.Second, false},
		{"300", 300 * time.Second, false},
		{" 10 ", 10 * time.Second, false},
		{"300s", 300 * time.Second, false},
		{"5m", 5 * time.Minute, false},
		{"1m30s", 90 * time.Second, false},
		{"0", 0, true},
		{"0s", 0, true},
		{"-5s", 0, true},
		{"five", 0, true},
		{"5 m", 0, true},
	}
	for _, tt := range tests {
		got, err := Duration(map[string]string{"KEY": tt.in}, "KEY", 300*time.Second)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Duration(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
