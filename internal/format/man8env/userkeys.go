package man8env

import (
	"fmt"
	"slices"
	"strings"
)

// KeyPrefix starts every key of Man8S's own.
const KeyPrefix = "MAN8S_"

// userKeys are the MAN8S_ keys meant for users: man8s-init's settings,
// which a user adds to man8env.env (by hand, or at pull with machines pull
// --env) to tune a machine, and mbctl's own (MAN8S_AUTO_UPDATE). MAN8S_STOP_SIGNAL is among them: mbctl writes
// the image's StopSignal there, and the user's choice replaces it, as
// docker run --stop-signal does. A new key that users may set belongs
// here.
var userKeys = []string{
	KeyStopSignal, KeyStopTimeout, KeyDrainTimeout, KeyWaitFor, KeyWaitTimeout,
	KeyLink, KeyCheck, KeyIPv6, KeyYggTable, KeyYggPriority, KeyCheckDNS,
	KeyDHCPTimeout, KeyIPv6Timeout, KeyResolvConf, KeyAutoUpdate,
	KeyReady, KeyReadyTimeout, KeyHealth, KeyOnUnhealthy,
	KeyHealthcheck, KeyHealthcheckInterval, KeyHealthcheckTimeout, KeyHealthcheckStartPeriod, KeyHealthcheckRetries,
	KeyForwardPorts, KeyForwardProxyProtocol,
}

// UserKeys returns the MAN8S_ keys a user may set, in documentation order.
func UserKeys() []string { return slices.Clone(userKeys) }

// CheckUserKey returns an error if key is one of Man8S's own (MAN8S_...)
// that is not meant for users: those mbctl writes at pull from the image
// and the host (the machine's name, address, image, command, user, init
// mode, provenance), which must match the machine's other files, and any
// other MAN8S_ name, which nothing reads (a misspelt setting would be
// ignored without a word). Every key outside MAN8S_ is the app's.
func CheckUserKey(key string) error {
	if !strings.HasPrefix(key, KeyPrefix) || slices.Contains(userKeys, key) {
		return nil
	}
	allowed := strings.Join(userKeys, ", ")
	switch key {
	case KeyArgs, KeyUser, KeyExposedPorts:
		return fmt.Errorf("%s is written by mbctl from the image (change it in man8env.env after the pull); the MAN8S_ keys users may set are %s", key, allowed)
	case KeyName, KeyTemplate, KeyYggAddress, KeyImageURL, KeyDigest, KeyInitMode, KeyVersion, KeyCreatedAt:
		return fmt.Errorf("%s is written by mbctl to match the machine's other files; the MAN8S_ keys users may set are %s", key, allowed)
	}
	return fmt.Errorf("%s is not a setting of man8s-init (misspelt?); the MAN8S_ keys users may set are %s", key, allowed)
}
