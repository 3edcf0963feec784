package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations (in nanoseconds) in log-linear buckets: values
// below 256 ns exactly, larger ones with 128 sub-buckets per power of two,
// so a percentile is within 0.8 % of the true sample value. Record is
// lock-free and safe for concurrent use; memory is fixed (about 36 KiB).
// Values above about 36 minutes are clamped.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	min    atomic.Int64 // 0 = unset; stored as value+1
	max    atomic.Int64
}

const (
	subBits    = 7
	subCount   = 1 << subBits // 128
	maxExp     = 34           // largest shift; v < 256<<34 ns (~73 min)
	numBuckets = (maxExp+1)*subCount + subCount
	maxValue   = int64(2*subCount)<<maxExp - 1
)

// bucketOf maps v >= 0 to its bucket index.
func bucketOf(v int64) int {
	if v < 2*subCount {
		return int(v)
	}
	if v > maxValue {
		v = maxValue
	}
	e := bits.Len64(uint64(v)) - (subBits + 1) // v>>e in [128, 256)
	return e*subCount + int(v>>e)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 2*subCount {
		return int64(i), int64(i)
	}
	e := i/subCount - 1
	m := int64(i - e*subCount)
	return m << e, (m+1)<<e - 1
}

// Record adds one duration (negative durations count as 0).
func (h *Histogram) Record(d time.Duration) { h.RecordValue(int64(d)) }

// RecordValue adds one value in nanoseconds (negative values count as 0).
func (h *Histogram) RecordValue(v int64) {
	if v < 0 {
		v = 0
	}
	if v > maxValue {
		v = maxValue
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		cur := h.min.Load()
		if cur != 0 && cur-1 <= v {
			break
		}
		if h.min.CompareAndSwap(cur, v+1) {
			break
		}
	}
	for {
		cur := h.max.Load()
		if cur >= v {
			break
		}
		if h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Percentile returns the p-th percentile (0 < p <= 100) by the nearest-rank
// method: the smallest recorded value such that at least p % of the values
// are <= it, reported as the middle of its bucket (clamped to the recorded
// min and max). It returns 0 for an empty histogram.
func (h *Histogram) Percentile(p float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return h.Min()
	}
	if p >= 100 {
		return h.Max()
	}
	rank := uint64(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			v = max(v, int64(h.Min()))
			v = min(v, int64(h.Max()))
			return time.Duration(v)
		}
	}
	return h.Max()
}

// Min returns the smallest recorded value (0 when empty).
func (h *Histogram) Min() time.Duration {
	m := h.min.Load()
	if m == 0 {
		return 0
	}
	return time.Duration(m - 1)
}

// Max returns the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the average value (0 when empty).
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Summary returns the usual percentiles of h.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count: h.Count(),
		P50:   Dur(h.Percentile(50)),
		P95:   Dur(h.Percentile(95)),
		P99:   Dur(h.Percentile(99)),
		Max:   Dur(h.Max()),
		Mean:  Dur(h.Mean()),
	}
}

// Latency is a latency summary.
type Latency struct {
	Count uint64 `json:"count"`
	P50   Dur    `json:"p50"`
	P95   Dur    `json:"p95"`
	P99   Dur    `json:"p99"`
	Max   Dur    `json:"max"`
	Mean  Dur    `json:"mean"`
}

// Dur is a duration that marshals to JSON as fractional milliseconds.
type Dur time.Duration

// MarshalJSON writes the duration in milliseconds (3 decimals).
func (d Dur) MarshalJSON() ([]byte, error) {
	ms := float64(d) / float64(time.Millisecond)
	return []byte(formatFloat(ms, 3)), nil
}

// String formats the duration with a unit suited to its size.
func (d Dur) String() string {
	v := time.Duration(d)
	switch {
	case v == 0:
		return "0"
	case v < time.Millisecond:
		return formatFloat(float64(v)/float64(time.Microsecond), 0) + "µs"
	case v < time.Second:
		return formatFloat(float64(v)/float64(time.Millisecond), 2) + "ms"
	}
	return formatFloat(v.Seconds(), 2) + "s"
}
