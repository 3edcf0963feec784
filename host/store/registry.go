package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// InstancesKey is the ZSET of instance ids scored by their last heartbeat
	// (unix milliseconds).
	InstancesKey = "rt:instances"
	// InstanceKeyPrefix + id is the HASH of an instance's info.
	InstanceKeyPrefix = "rt:instance:"
	// maxPrune bounds how many dead ids one Instances call claims.
	maxPrune = 1000
	// maxLive bounds how many live instances one Instances call lists.
	maxLive = 10000
)

// Instance is one live host instance as seen in the registry.
type Instance struct {
	// ID is the instance id.
	ID string
	// LastSeen is the time of its last heartbeat (its own clock).
	LastSeen time.Time
	// Info is what the instance published with its heartbeat (may be empty
	// when its hash expired between the two reads).
	Info map[string]string
}

// Heartbeat records that instanceID is alive: HSET rt:instance:<id> info (with
// a PEXPIRE of ttl) and ZADD rt:instances <now-ms> <id>, in one MULTI/EXEC.
// Scores use this process's clock, so clocks across instances must agree to
// well within ttl.
func (s *Store) Heartbeat(ctx context.Context, instanceID string, info map[string]string, ttl time.Duration) error {
	if instanceID == "" {
		return errors.New("store: heartbeat: empty instance id")
	}
	if ttl <= 0 {
		return errors.New("store: heartbeat: ttl must be positive")
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	now := time.Now().UnixMilli()
	key := InstanceKeyPrefix + instanceID
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key) // drop fields that are no longer reported
		fields := make([]any, 0, 2*len(info)+2)
		fields = append(fields, "heartbeat", strconv.FormatInt(now, 10))
		for k, v := range info {
			fields = append(fields, k, v)
		}
		p.HSet(ctx, key, fields...)
		p.PExpire(ctx, key, ttl)
		p.ZAdd(ctx, InstancesKey, redis.Z{Score: float64(now), Member: instanceID})
		return nil
	})
	s.observe(err)
	if err != nil {
		return fmt.Errorf("store: heartbeat %s: %w", instanceID, err)
	}
	return nil
}

// Instances lists the instances whose last heartbeat is newer than ttl, and
// claims the ids of dead ones (older than ttl): they are removed from the
// registry, and each dead id is returned by exactly one Instances call across
// all instances (the one whose ZREM removed it), so the caller that gets it
// owns its cleanup (e.g. presence of the crashed instance). A caller that
// fails to clean up after claiming should re-run the cleanup from its own
// records; the id is not handed out again.
func (s *Store) Instances(ctx context.Context, ttl time.Duration) (live []Instance, dead []string, err error) {
	if ttl <= 0 {
		return nil, nil, errors.New("store: instances: ttl must be positive")
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cutoff := time.Now().Add(-ttl).UnixMilli()
	cutoffStr := strconv.FormatInt(cutoff, 10)

	candidates, err := s.client.ZRangeByScore(ctx, InstancesKey, &redis.ZRangeBy{
		Min: "-inf", Max: "(" + cutoffStr, Count: maxPrune,
	}).Result()
	if err != nil {
		s.observe(err)
		return nil, nil, fmt.Errorf("store: instances: list dead: %w", err)
	}
	if len(candidates) > 0 {
		// A ZREM conditioned on the score being old: an instance that came
		// back between the two calls must not be claimed. One script per id
		// keeps each claim atomic.
		p := s.client.Pipeline()
		cmds := make([]*redis.Cmd, len(candidates))
		for i, id := range candidates {
			cmds[i] = p.Eval(ctx, claimDeadScript, []string{InstancesKey, InstanceKeyPrefix + id}, id, cutoff)
		}
		_, _ = p.Exec(ctx)
		for i, c := range cmds {
			n, err := c.Int64()
			if err != nil {
				s.observe(err)
				return nil, nil, fmt.Errorf("store: instances: claim dead: %w", err)
			}
			if n == 1 {
				dead = append(dead, candidates[i])
			}
		}
	}

	zs, err := s.client.ZRangeByScoreWithScores(ctx, InstancesKey, &redis.ZRangeBy{
		Min: cutoffStr, Max: "+inf", Count: maxLive,
	}).Result()
	if err != nil {
		s.observe(err)
		return nil, dead, fmt.Errorf("store: instances: list live: %w", err)
	}
	if len(zs) == 0 {
		s.observe(nil)
		return nil, dead, nil
	}
	p := s.client.Pipeline()
	infos := make([]*redis.MapStringStringCmd, len(zs))
	for i, z := range zs {
		id, _ := z.Member.(string)
		infos[i] = p.HGetAll(ctx, InstanceKeyPrefix+id)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		s.observe(err)
		return nil, dead, fmt.Errorf("store: instances: read info: %w", err)
	}
	live = make([]Instance, len(zs))
	for i, z := range zs {
		id, _ := z.Member.(string)
		info, _ := infos[i].Result()
		live[i] = Instance{ID: id, LastSeen: time.UnixMilli(int64(z.Score)), Info: info}
	}
	s.observe(nil)
	return live, dead, nil
}

// claimDead removes ARGV[1] from the zset KEYS[1] when its score is still below
// ARGV[2], deletes its info hash KEYS[2], and returns 1 when it removed it.
// It runs with plain EVAL because EVALSHA's NOSCRIPT fallback cannot work
// inside a pipeline; the script is tiny.
const claimDeadScript = `
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
if tonumber(s) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
`

// RunHeartbeat sends a heartbeat for id at once and then every interval until
// ctx is done, with the info that infoFn returns (infoFn may be nil). Failures
// are logged and retried on the next tick; it never returns early.
func (s *Store) RunHeartbeat(ctx context.Context, id string, infoFn func() map[string]string, interval, ttl time.Duration) {
	if interval <= 0 {
		interval = ttl / 3
	}
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		var info map[string]string
		if infoFn != nil {
			info = infoFn()
		}
		hctx, cancel := context.WithTimeout(ctx, interval)
		err := s.Heartbeat(hctx, id, info, ttl)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				s.logger.Warn("store: heartbeat failed; retrying", "instance", id, "err", err)
			} else {
				s.logger.Debug("store: heartbeat still failing", "instance", id, "err", err)
			}
			failing = true
		case err == nil && failing:
			s.logger.Info("store: heartbeat recovered", "instance", id)
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
