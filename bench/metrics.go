package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// metricsClient fetches the server's /metrics.
var metricsClient = &http.Client{Timeout: 10 * time.Second}

// Sample is one Prometheus text-format sample.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ScrapeMetrics fetches baseURL/metrics and returns the samples whose name
// starts with one of prefixes (all when none).
func ScrapeMetrics(ctx context.Context, baseURL string, prefixes ...string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(baseURL, "/")+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics request: %w", err)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: get /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: get /metrics: status %s", resp.Status)
	}
	return ParseMetrics(io.LimitReader(resp.Body, 32<<20), prefixes...)
}

// ParseMetrics parses Prometheus text format (comments skipped; label values
// with escaped quotes are not unescaped). Samples whose name does not start
// with one of prefixes (when given) are skipped.
func ParseMetrics(r io.Reader, prefixes ...string) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if len(prefixes) > 0 {
			ok := false
			for _, p := range prefixes {
				if strings.HasPrefix(line, p) {
					ok = true
					break
				}
			}
			if !ok {
				continue
			}
		}
		s, ok := parseSample(line)
		if ok {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("bench: read metrics: %w", err)
	}
	return out, nil
}

func parseSample(line string) (Sample, bool) {
	s := Sample{Labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
		s.Name = line[:i]
		end := strings.LastIndexByte(line, '}')
		if end < i {
			return s, false
		}
		for _, kv := range splitLabels(line[i+1 : end]) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			s.Labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
		rest = line[end+1:]
	} else if i >= 0 {
		s.Name = line[:i]
		rest = line[i:]
	} else {
		return s, false
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, false
	}
	s.Value = v
	return s, true
}

// splitLabels splits `a="x",b="y,z"` at commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQ, esc, start := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			inQ = !inQ
		case c == ',' && !inQ:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// value returns the first sample named name whose labels include match.
func value(samples []Sample, name string, match map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.Labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return s.Value, true
		}
	}
	return 0, false
}

// HistogramBuckets extracts the cumulative buckets (upper bound -> count) of
// histogram name whose labels include match.
func HistogramBuckets(samples []Sample, name string, match map[string]string) map[float64]float64 {
	out := map[float64]float64{}
	for _, s := range samples {
		if s.Name != name+"_bucket" {
			continue
		}
		ok := true
		for k, v := range match {
			if s.Labels[k] != v {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		le := s.Labels["le"]
		var ub float64
		if le == "+Inf" {
			ub = math.Inf(1)
		} else {
			var err error
			if ub, err = strconv.ParseFloat(le, 64); err != nil {
				continue
			}
		}
		out[ub] = s.Value
	}
	return out
}

// BucketQuantile estimates quantile q (0..1) of the difference between two
// cumulative bucket sets (after - before) by linear interpolation within
// the bucket, as Prometheus' histogram_quantile does. ok is false when no
// observations fell between the two.
func BucketQuantile(q float64, before, after map[float64]float64) (v float64, count float64, ok bool) {
	type b struct{ ub, n float64 }
	var bs []b
	for ub, n := range after {
		bs = append(bs, b{ub, n - before[ub]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].ub < bs[j].ub })
	if len(bs) == 0 {
		return 0, 0, false
	}
	total := bs[len(bs)-1].n
	if total <= 0 {
		return 0, 0, false
	}
	rank := q * total
	prevUB, prevN := 0.0, 0.0
	for _, x := range bs {
		if x.n >= rank {
			if math.IsInf(x.ub, 1) {
				return prevUB, total, true
			}
			if x.n == prevN {
				return x.ub, total, true
			}
			return prevUB + (x.ub-prevUB)*(rank-prevN)/(x.n-prevN), total, true
		}
		prevUB, prevN = x.ub, x.n
	}
	return prevUB, total, true
}

// ReadRSS returns the resident set size of process pid from /proc.
func ReadRSS(pid int) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("bench: read RSS of %d: %w", pid, err)
	}
	defer f.Close()
	return parseVmRSS(f)
}

func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: bad VmRSS line %q: %w", line, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("bench: no VmRSS in status")
}

// childPIDs returns the direct children of pid (Linux, /proc/<pid>/task/*/children).
func childPIDs(pid int) []int {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// memSnapshot is one reading of the server's memory.
type memSnapshot struct {
	source     string
	rss        int64
	heapInuse  int64
	goroutines float64
	pluginRSS  int64
}

// snapshotMemory reads the server's RSS from /proc (pid > 0) or /metrics,
// and heap and goroutines from /metrics when reachable.
func snapshotMemory(ctx context.Context, baseURL string, pid int) (memSnapshot, error) {
	var m memSnapshot
	samples, merr := ScrapeMetrics(ctx, baseURL, "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_goroutines")
	if merr == nil {
		if v, ok := value(samples, "go_memstats_heap_inuse_bytes", nil); ok {
			m.heapInuse = int64(v)
		}
		if v, ok := value(samples, "go_goroutines", nil); ok {
			m.goroutines = v
		}
	}
	if pid > 0 {
		rss, err := ReadRSS(pid)
		if err != nil {
			return m, err
		}
		m.rss, m.source = rss, "/proc/"+strconv.Itoa(pid)+"/status"
		for _, c := range childPIDs(pid) {
			if r, err := ReadRSS(c); err == nil {
				m.pluginRSS += r
			}
		}
		return m, nil
	}
	if merr != nil {
		return m, merr
	}
	v, ok := value(samples, "process_resident_memory_bytes", nil)
	if !ok {
		return m, fmt.Errorf("bench: /metrics has no process_resident_memory_bytes")
	}
	m.rss, m.source = int64(v), "/metrics process_resident_memory_bytes"
	return m, nil
}

// cpuSnapshot is the CPU time used so far by the load generator (this
// process), the server and the server's children (plugin processes).
type cpuSnapshot struct {
	client, server, plugins time.Duration
	ok                      bool // server (and plugins) were read
}

// userHZ is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const userHZ = 100

// snapshotCPU reads CPU times from /proc: the server's only when pid > 0
// (the bench knows it with --spawn or --server-pid).
func snapshotCPU(pid int) cpuSnapshot {
	var s cpuSnapshot
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if pid <= 0 {
		return s
	}
	t, err := ReadCPU(pid)
	if err != nil {
		return s
	}
	s.server, s.ok = t, true
	for _, c := range childPIDs(pid) {
		if t, err := ReadCPU(c); err == nil {
			s.plugins += t
		}
	}
	return s
}

// ReadCPU returns the user+system CPU time of a process (/proc/<pid>/stat).
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc stat line;
// the command name (field 2) may contain spaces and parentheses.
func parseStatCPU(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: bad stat line")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state): utime is f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: short stat line")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: bad stat times")
	}
	return time.Duration(u+s) * time.Second / userHZ, nil
}

// CPUUse is the CPU time spent during a step, in microseconds per delivery
// (0 when not measured).
type CPUUse struct {
	ServerUsPerDelivery float64 `json:"server_us_per_delivery,omitempty"`
	PluginUsPerDelivery float64 `json:"plugins_us_per_delivery,omitempty"`
	ClientUsPerDelivery float64 `json:"client_us_per_delivery"`
	// ServerCores etc. are the average cores used during the step.
	ServerCores float64 `json:"server_cores,omitempty"`
	PluginCores float64 `json:"plugin_cores,omitempty"`
	ClientCores float64 `json:"client_cores"`
}

// cpuUse turns two snapshots around a step into per-delivery costs.
func cpuUse(a, b cpuSnapshot, deliveries int64, elapsed time.Duration) CPUUse {
	var u CPUUse
	per := func(d time.Duration) float64 {
		if deliveries <= 0 {
			return 0
		}
		return float64(d.Microseconds()) / float64(deliveries)
	}
	cores := func(d time.Duration) float64 {
		if elapsed <= 0 {
			return 0
		}
		return d.Seconds() / elapsed.Seconds()
	}
	u.ClientUsPerDelivery, u.ClientCores = per(b.client-a.client), cores(b.client-a.client)
	if a.ok && b.ok {
		u.ServerUsPerDelivery, u.ServerCores = per(b.server-a.server), cores(b.server-a.server)
		u.PluginUsPerDelivery, u.PluginCores = per(b.plugins-a.plugins), cores(b.plugins-a.plugins)
	}
	return u
}
