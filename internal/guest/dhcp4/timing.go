package dhcp4

import "time"

// MinRetry is the shortest wait between two renewal or rebinding attempts.
// RFC 2131 4.4.5 says 60 s; short test leases need less, so the wait is
// also at most half of the time left (see nextAttempt).
const MinRetry = 60 * time.Second

// Timers returns when to renew (T1) and rebind (T2), counted from the
// lease's start, for a lease of the given length and the server's T1 and
// T2 options (zero when absent). Missing or inconsistent values take the
// RFC 2131 defaults: T1 = 0.5 × lease, T2 = 0.875 × lease, and
// 0 < T1 < T2 < lease always holds. An infinite lease (all ones on the
// wire, math.MaxUint32 seconds) is never renewed: both timers are zero.
func Timers(lease, t1, t2 time.Duration) (renew, rebind time.Duration) {
	if lease <= 0 || lease >= infinite {
		return 0, 0
	}
	if t2 <= 0 || t2 >= lease {
		t2 = lease * 7 / 8
	}
	if t1 <= 0 || t1 >= t2 {
		t1 = lease / 2
		if t1 >= t2 {
			t1 = t2 / 2
		}
	}
	return t1, t2
}

// infinite is the lease time that means "forever" (RFC 2131 3.3).
const infinite = time.Duration(0xffffffff) * time.Second

// nextAttempt returns how long to wait before the next renewal or
// rebinding attempt when left is the time to the deadline (T2 while
// renewing, the lease's end while rebinding): half of it, down to a
// minimum of MinRetry (RFC 2131 4.4.5), and never past the deadline.
func nextAttempt(left time.Duration) time.Duration {
	if left <= 0 {
		return 0
	}
	return min(max(left/2, MinRetry), left)
}

// discoverTimeout is the per-attempt answer timeout while discovering:
// fast first tries (the server is on the same bridge and answers in
// milliseconds; a lost first packet must not cost seconds), then the
// RFC 2131 4.1 back-off up to 8 s.
func discoverTimeout(attempt int) time.Duration {
	d := 250 * time.Millisecond
	for range attempt {
		d *= 2
		if d >= 8*time.Second {
			return 8 * time.Second
		}
	}
	return d
}
