package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBucketsRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 255, 256, 257, 383, 384, 1000, 123456, 1 << 30, 1<<40 + 12345, maxValue} {
		i := bucketOf(v)
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Errorf("v=%d bucket %d = [%d,%d]", v, i, lo, hi)
		}
		if v >= 256 && float64(hi-lo)/float64(lo) > 1.0/128 {
			t.Errorf("v=%d bucket [%d,%d] wider than 1/128", v, lo, hi)
		}
		if i < 0 || i >= numBuckets {
			t.Errorf("v=%d bucket %d out of range", v, i)
		}
	}
	// Buckets are contiguous and increasing.
	prevHi := int64(-1)
	for i := range numBuckets {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d = [%d,%d] after %d", i, lo, hi, prevHi)
		}
		prevHi = hi
	}
}

// exactPercentile is the nearest-rank percentile of sorted values.
func exactPercentile(sorted []int64, p float64) int64 {
	rank := int(float64(len(sorted))*p/100 + 0.999999999)
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestPercentiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []int64{700}, 50, 700},
		{"small exact p50", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5},
		{"small exact p90", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9},
		{"small exact p99", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
		{"p100 is max", []int64{5, 1_000_000_007}, 100, 1_000_000_007},
		{"p0 is min", []int64{5, 1_000_000_007}, 0, 5},
		{"negative counts as zero", []int64{-5}, 50, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tc.values {
				h.RecordValue(v)
			}
			if got := h.Percentile(tc.p); got != tc.want {
				t.Fatalf("p%v = %d, want %d", tc.p, got, tc.want)
			}
		})
	}
}

func TestPercentilesRandomWithinError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]int64, 100000)
	for i := range vals {
		// log-uniform from 1µs to 1s
		v := int64(1000 * math.Pow(1e6, r.Float64()))
		vals[i] = v
		h.RecordValue(v)
	}
	slices.Sort(vals)
	for _, p := range []float64{1, 10, 50, 90, 95, 99, 99.9} {
		want := exactPercentile(vals, p)
		got := int64(h.Percentile(p))
		if diff := float64(got-want) / float64(want); diff > 0.01 || diff < -0.01 {
			t.Errorf("p%v = %d, exact %d (%.2f%% off)", p, got, want, diff*100)
		}
	}
	if h.Count() != uint64(len(vals)) || h.Min() != time.Duration(vals[0]) || h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Errorf("count %d min %d max %d", h.Count(), h.Min(), h.Max())
	}
	var sum int64
	for _, v := range vals {
		sum += v
	}
	if h.Mean() != time.Duration(sum/int64(len(vals))) {
		t.Errorf("mean %d, want %d", h.Mean(), sum/int64(len(vals)))
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				h.RecordValue(int64(g*1000 + i + 1))
			}
		}()
	}
	wg.Wait()
	if h.Count() != 8000 || h.Min() != 1 || h.Max() != 8000 {
		t.Fatalf("count %d min %d max %d", h.Count(), h.Min(), h.Max())
	}
	if p := h.Percentile(50); p < 3960 || p > 4040 {
		t.Fatalf("p50 %d", p)
	}
}

func TestDurString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{150 * time.Microsecond, "150µs"},
		{2500 * time.Microsecond, "2.50ms"},
		{1500 * time.Millisecond, "1.50s"},
	}
	for _, tc := range tests {
		if got := Dur(tc.d).String(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.d, got, tc.want)
		}
		b, _ := Dur(tc.d).MarshalJSON()
		if len(b) == 0 {
			t.Errorf("%v: empty JSON", tc.d)
		}
	}
}
