package app

import "testing"

// The per-socket event limit (tokenBucket, a value in sockState instead of a
// *rate.Limiter per socket) still limits: a full burst, then one event per
// 1/rate, never more than burst saved up.
func TestTokenBucketLimits(t *testing.T) {
	const rate, burst = 2.0, 3 // 2 events/s, bursts of 3
	var b tokenBucket
	now := int64(1_000_000_000)
	for i := range burst {
		if !b.allow(now, rate, burst) {
			t.Fatalf("event %d of the first burst refused", i)
		}
	}
	if b.allow(now, rate, burst) {
		t.Fatal("event beyond the burst allowed")
	}
	now += 400_000_000 // 0.8 token
	if b.allow(now, rate, burst) {
		t.Fatal("allowed before a token was refilled")
	}
	now += 100_000_000 // 1 token
	if !b.allow(now, rate, burst) {
		t.Fatal("refused after a token was refilled")
	}
	now += 60_000_000_000 // a minute idle: back to a full burst, not 120
	n := 0
	for b.allow(now, rate, burst) {
		n++
	}
	if n != burst {
		t.Fatalf("after a long idle %d events allowed, want %d", n, burst)
	}
	now -= 5_000_000_000 // the wall clock stepped back: no refill, no panic
	if b.allow(now, rate, burst) {
		t.Fatal("allowed after the clock stepped back with an empty bucket")
	}
}
