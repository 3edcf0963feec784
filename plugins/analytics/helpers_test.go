package analytics

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

const (
	item1 = "6f1c1b2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
	item2 = "7a2d2c3f-4b5c-4d6e-9fa0-1b2c3d4e5f60"
	elem1 = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	room1 = "2c5f39cb-3ab2-42e3-994a-1127e4ddb538"
)

var (
	alice   = sdktest.Socket("sA", "alice", "conf1")
	bob     = sdktest.Socket("sB", "bob", "conf1")
	nobody  = sdktest.Socket("sN", "nobody")
	fixedT0 = time.Date(2021, 4, 1, 12, 0, 0, 0, time.UTC)
)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// newTestPlugin starts a plugin (without its writeback loop) on host h, or a
// fresh sdktest host when h is nil.
func newTestPlugin(t *testing.T, h sdk.Host, cfg map[string]any) (*Plugin, *clock) {
	t.Helper()
	c := &clock{t: fixedT0}
	p := New()
	p.now = c.now
	p.noLoop = true
	sdktest.Start(t, context.Background(), p, h, cfg)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p, c
}

func view(id, ct string) map[string]any { return map[string]any{"identifier": id, "contentType": ct} }

// fakeHasura answers SelectViewCounts with existing and records the
// InsertViewCounts variables. Each request takes the next status of
// statuses (then 200).
type fakeHasura struct {
	mu       sync.Mutex
	statuses []int
	existing string // data of SelectViewCounts
	inserts  []map[string][]map[string]any
	secrets  []string
	requests int
}

func (f *fakeHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req struct {
		Query     string                     `json:"query"`
		Variables map[string]json.RawMessage `json:"variables"`
	}
	_ = json.Unmarshal(b, &req)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	f.secrets = append(f.secrets, r.Header.Get("X-Hasura-Admin-Secret"))
	if len(f.statuses) > 0 {
		st := f.statuses[0]
		f.statuses = f.statuses[1:]
		if st != 200 {
			w.WriteHeader(st)
			return
		}
	}
	switch {
	case strings.Contains(req.Query, "SelectViewCounts"):
		ex := f.existing
		if ex == "" {
			ex = `{"analytics_ContentItemStats":[],"analytics_ContentElementStats":[],"analytics_RoomStats":[]}`
		}
		_, _ = io.WriteString(w, `{"data":`+ex+`}`)
	case strings.Contains(req.Query, "InsertViewCounts"):
		ins := map[string][]map[string]any{}
		for _, k := range []string{"itemStats", "elementStats", "roomStats"} {
			var rows []map[string]any
			_ = json.Unmarshal(req.Variables[k], &rows)
			ins[k] = rows
		}
		f.inserts = append(f.inserts, ins)
		_, _ = io.WriteString(w, `{"data":{"insert_analytics_ContentItemStats":{"affected_rows":1},"insert_analytics_ContentElementStats":{"affected_rows":1},"insert_analytics_RoomStats":{"affected_rows":1}}}`)
	default:
		_, _ = io.WriteString(w, `{"errors":[{"message":"unknown operation"}]}`)
	}
}

// written sums the view counts of every recorded insert, by "<type>:<id>".
func (f *fakeHasura) written() map[string]float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]float64{}
	for _, ins := range f.inserts {
		for _, r := range ins["itemStats"] {
			out["Item:"+r["itemId"].(string)] += r["viewCount"].(float64)
		}
		for _, r := range ins["elementStats"] {
			out["Element:"+r["elementId"].(string)] += r["viewCount"].(float64)
		}
		for _, r := range ins["roomStats"] {
			out["Room.HLSStream:"+r["roomId"].(string)] += r["hlsViewCount"].(float64)
		}
	}
	return out
}
