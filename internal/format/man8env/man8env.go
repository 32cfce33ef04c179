// Package man8env is the contract between mbctl and man8s-init (DESIGN.md):
// the keys of a machine's man8env.env, those mbctl writes when it pulls a
// machine and those man8s-init reads when the machine starts; the init-mode
// values and template names; and the paths inside the rootfs where mbctl
// puts the init and the env file. Both sides use these names, so they
// cannot drift apart.
package man8env

// Written by mbctl at pull; MAN8S_APPLICATION_*, MAN8S_STOP_SIGNAL and
// MAN8S_INIT_MODE are read by man8s-init too.
const (
	KeyName       = "MAN8S_CONTAINER_NAME"
	KeyTemplate   = "MAN8S_CONTAINER_TEMPLATE"
	KeyYggAddress = "MAN8S_YGGDRASIL_ADDRESS"
	KeyImageURL   = "MAN8S_OCI_IMAGE_URL"
	KeyDigest     = "MAN8S_OCI_IMAGE_DIGEST"
	KeyArgs       = "MAN8S_APPLICATION_ARGS"
	KeyUser       = "MAN8S_APPLICATION_USER"
	KeyStopSignal = "MAN8S_STOP_SIGNAL"
	KeyInitMode   = "MAN8S_INIT_MODE"
	KeyVersion    = "MAN8S_MBCTL_VERSION"
	KeyCreatedAt  = "MAN8S_MBCTL_CREATED_AT"
	// KeyStrict is "yes" on a strict machine: its root is the image's
	// root, shared read-only with every strict machine of that image.
	KeyStrict = "MAN8S_STRICT"
)

// Read by man8s-init only; users add them to tune a machine.
const (
	KeyStopTimeout = "MAN8S_STOP_TIMEOUT"
	KeyWaitFor     = "MAN8S_WAIT_FOR"
	KeyWaitTimeout = "MAN8S_WAIT_TIMEOUT"

	// KeyDrainTimeout bounds the wait, after the app has exited, for the
	// TCP data still queued in the machine's sockets (0: no wait).
	KeyDrainTimeout = "MAN8S_DRAIN_TIMEOUT"

	// The network steps (DESIGN.md "Networking").
	KeyLink        = "MAN8S_NETWORK_LINK"
	KeyCheck       = "MAN8S_NETWORK_CHECK"
	KeyIPv6        = "MAN8S_IPV6"
	KeyYggTable    = "MAN8S_YGG_TABLE"
	KeyYggPriority = "MAN8S_YGG_RULE_PRIORITY"
	KeyCheckDNS    = "MAN8S_CHECK_DNS"
	KeyDHCPTimeout = "MAN8S_DHCP_TIMEOUT"
	KeyIPv6Timeout = "MAN8S_IPV6_TIMEOUT"
	KeyResolvConf  = "MAN8S_RESOLV_CONF"

	// Readiness and health (see health.go).
	KeyReady        = "MAN8S_READY"
	KeyReadyTimeout = "MAN8S_READY_TIMEOUT"
	KeyHealth       = "MAN8S_HEALTH"
	KeyOnUnhealthy  = "MAN8S_ON_UNHEALTHY"
)

// Written by mbctl at pull from the image's HEALTHCHECK, read by
// man8s-init; users may change them like MAN8S_STOP_SIGNAL.
const (
	KeyHealthcheck            = "MAN8S_HEALTHCHECK"
	KeyHealthcheckInterval    = "MAN8S_HEALTHCHECK_INTERVAL"
	KeyHealthcheckTimeout     = "MAN8S_HEALTHCHECK_TIMEOUT"
	KeyHealthcheckStartPeriod = "MAN8S_HEALTHCHECK_START_PERIOD"
	KeyHealthcheckRetries     = "MAN8S_HEALTHCHECK_RETRIES"
)

// Read by mbctl only; users add them to a machine's man8env.env.
const (
	// KeyAutoUpdate opts a machine in to `mbctl machines auto-update`
	// (see AutoUpdate): "registry" follows its image reference's tag.
	KeyAutoUpdate = "MAN8S_AUTO_UPDATE"
)
