package store

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The registry uses fixed key names (rt:instances), so it is tested on the
// embedded server only: on the shared Redis it would claim other tests' ids.
func TestRegistry(t *testing.T) {
	s := newEmbedded(t)
	ctx := context.Background()
	ttl := time.Minute

	if err := s.Heartbeat(ctx, "a", map[string]string{"addr": "10.0.0.1:8080", "sockets": "3"}, ttl); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "b", nil, ttl); err != nil {
		t.Fatal(err)
	}
	// "dead" last beat long ago.
	old := float64(time.Now().Add(-2 * ttl).UnixMilli())
	if err := s.Client().ZAdd(ctx, InstancesKey, redis.Z{Score: old, Member: "dead"}).Err(); err != nil {
		t.Fatal(err)
	}
	s.Client().HSet(ctx, InstanceKeyPrefix+"dead", "addr", "gone")

	live, dead, err := s.Instances(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(live))
	for _, in := range live {
		ids = append(ids, in.ID)
		if time.Since(in.LastSeen) > ttl || in.Info["heartbeat"] == "" {
			t.Errorf("instance %s: LastSeen %v, info %v", in.ID, in.LastSeen, in.Info)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "b"}) {
		t.Errorf("live = %v, want [a b]", ids)
	}
	if !slices.Equal(dead, []string{"dead"}) {
		t.Errorf("dead = %v, want [dead]", dead)
	}
	for _, in := range live {
		if in.ID == "a" && (in.Info["addr"] != "10.0.0.1:8080" || in.Info["sockets"] != "3") {
			t.Errorf("info of a = %v", in.Info)
		}
	}
	if n, _ := s.Client().Exists(ctx, InstanceKeyPrefix+"dead").Result(); n != 0 {
		t.Error("dead instance's hash not deleted")
	}

	// A dead id is handed out once.
	_, dead, err = s.Instances(ctx, ttl)
	if err != nil || len(dead) != 0 {
		t.Errorf("second Instances: dead = %v, %v; want none", dead, err)
	}

	// The info hash carries the TTL.
	pttl, err := s.Client().PTTL(ctx, InstanceKeyPrefix+"a").Result()
	if err != nil || pttl <= 0 || pttl > ttl {
		t.Errorf("PTTL of instance hash = %v, %v", pttl, err)
	}

	// A heartbeat replaces stale info fields.
	if err := s.Heartbeat(ctx, "a", map[string]string{"addr": "x"}, ttl); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Client().HGet(ctx, InstanceKeyPrefix+"a", "sockets").Result(); v != "" {
		t.Errorf("stale field kept: sockets=%q", v)
	}
}

func TestRegistryBadInput(t *testing.T) {
	s := newEmbedded(t)
	ctx := context.Background()
	if err := s.Heartbeat(ctx, "", nil, time.Second); err == nil {
		t.Error("empty id: want error")
	}
	if err := s.Heartbeat(ctx, "x", nil, 0); err == nil {
		t.Error("zero ttl: want error")
	}
	if _, _, err := s.Instances(ctx, 0); err == nil {
		t.Error("zero ttl: want error")
	}
}

func TestRunHeartbeat(t *testing.T) {
	s := newEmbedded(t)
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunHeartbeat(ctx, "me", func() map[string]string {
			select {
			case calls <- struct{}{}:
			default:
			}
			return map[string]string{"n": strconv.Itoa(len(calls))}
		}, 20*time.Millisecond, time.Minute)
	}()
	// Wait for at least two beats.
	for range 2 {
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat")
		}
	}
	live, _, err := s.Instances(context.Background(), time.Minute)
	if err != nil || len(live) != 1 || live[0].ID != "me" {
		t.Fatalf("Instances = %v, %v", live, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunHeartbeat did not return after cancel")
	}
}
