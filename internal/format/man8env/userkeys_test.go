package man8env

import (
	"strings"
	"testing"
)

func TestCheckUserKey(t *testing.T) {
	tests := []struct {
		key  string
		want string // "" for allowed; else part of the error
	}{
		{"POSTGRES_PASSWORD", ""},
		{"man8s_lowercase_is_the_apps", ""},
		{"MAN8S", ""},
		{KeyStopTimeout, ""},
		{KeyStopSignal, ""},
		{KeyDrainTimeout, ""},
		{KeyAutoUpdate, ""},
		{KeyWaitFor, ""},
		{KeyCheck, ""},
		{KeyName, "written by mbctl to match the machine's other files"},
		{KeyYggAddress, "written by mbctl"},
		{KeyInitMode, "written by mbctl"},
		{KeyDigest, "written by mbctl"},
		{KeyArgs, "change it in man8env.env after the pull"},
		{KeyUser, "change it in man8env.env after the pull"},
		{"MAN8S_STOP_TIMOUT", "not a setting of man8s-init (misspelt?)"},
		{"MAN8S_INIT_LEASE", "not a setting of man8s-init"},
	}
	for _, tt := range tests {
		err := CheckUserKey(tt.key)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckUserKey(%s) = %v, want nil", tt.key, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), KeyStopTimeout)):
			t.Errorf("CheckUserKey(%s) = %v, want an error naming it, containing %q and listing the keys users may set", tt.key, err, tt.want)
		}
	}
}

func TestUserKeysAreMan8sKeys(t *testing.T) {
	for _, k := range UserKeys() {
		if !strings.HasPrefix(k, KeyPrefix) {
			t.Errorf("user key %s lacks the %s prefix", k, KeyPrefix)
		}
	}
	u := UserKeys()
	u[0] = "changed"
	if UserKeys()[0] == "changed" {
		t.Error("UserKeys returns the package's own slice")
	}
}
