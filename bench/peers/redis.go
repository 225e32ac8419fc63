package peers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// DefaultRedisAddr is where these machines run a Redis.
const DefaultRedisAddr = "127.0.0.1:6379"

// StartRedis runs a redis-server of the run's own on a free loopback port,
// keeping nothing on disk, so that INFO commandstats counts the benchmark's
// commands only (a shared Redis also counts everyone else's). Stop it with
// Stop; it dies with this process.
func StartRedis(bin string) (*Proc, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "peerload-redis-")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(ports[0])
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--maxclients", "10000")
	p, err := start("redis-server", cmd, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p.APIAddr = "127.0.0.1:" + port
	if err := p.waitListening(p.APIAddr); err != nil {
		return nil, err
	}
	return p, nil
}

// Redis is a client of the Redis the nodes share, for the run's figures and
// clean-up.
type Redis struct {
	Addr string
	c    rueidis.Client
}

// DialRedis connects to addr and checks that it answers PING.
func DialRedis(addr string) (*Redis, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis at %s does not answer PING: %w", addr, err)
	}
	return &Redis{Addr: addr, c: c}, nil
}

// Close closes the client.
func (r *Redis) Close() { r.c.Close() }

// NewPrefix is a key prefix no earlier run used.
func NewPrefix(kind string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "peerload-" + kind + "-" + hex.EncodeToString(b[:])
}

// DeletePrefix deletes every key that starts with prefix.
func (r *Redis) DeletePrefix(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := r.c.Do(ctx, r.c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		if len(e.Elements) > 0 {
			if err := r.c.Do(ctx, r.c.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				return err
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// CommandStats is the calls of each command since the server started (INFO
// commandstats), without the INFO calls themselves.
func (r *Redis) CommandStats() (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.c.Do(ctx, r.c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		// cmdstat_publish:calls=123,usec=456,...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if name == "info" {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[name] = n
			}
		}
	}
	return out, nil
}
